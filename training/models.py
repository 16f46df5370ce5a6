"""Build the scikit-learn pipeline for a model type; raw columns in, prediction out."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from kernel.errors import ConfigError
from training.config import ModelConfig

ESTIMATORS: dict[str, type[RegressorMixin]] = {
    "hist_gradient_boosting": HistGradientBoostingRegressor,
    "random_forest": RandomForestRegressor,
    "ridge": Ridge,
}
# Reproducible fits unless the config says otherwise.
_DEFAULTS: dict[str, dict[str, Any]] = {
    "hist_gradient_boosting": {"random_state": 0},
    "random_forest": {"random_state": 0, "n_jobs": -1},
    "ridge": {},
}


def _estimator(config: ModelConfig, categorical: list[str]) -> RegressorMixin:
    params = {**_DEFAULTS[config.type], **config.params}
    if config.type == "hist_gradient_boosting" and categorical:
        params.setdefault("categorical_features", categorical)
    try:
        estimator = ESTIMATORS[config.type](**params)
        # Check value constraints now, not an hour into fit().
        estimator._validate_params()
    except (TypeError, InvalidParameterError) as exc:
        raise ConfigError(f"model.params for {config.type}: {exc}") from exc
    return estimator


def validate(config: ModelConfig) -> None:
    """Check the hyperparameters without data (raises ConfigError naming the bad one)."""
    _estimator(config, [])


def build(config: ModelConfig, numeric: list[str], categorical: list[str]) -> Pipeline:
    """Return an unfitted pipeline that encodes the raw columns and fits `config.type`."""
    if config.type == "ridge":
        encode = ColumnTransformer(
            [
                ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
                ("numeric", StandardScaler(), numeric),
            ],
            verbose_feature_names_out=False,
        )
        return Pipeline([("encode", encode), ("model", _estimator(config, []))])
    # Gradient boosting encodes the categorical columns itself (one encoder, not an outer
    # OrdinalEncoder plus its own: the same trees and predictions, ~1 ms less per call); a
    # category it never saw is treated as missing.
    if config.type == "hist_gradient_boosting":
        return Pipeline([("model", _estimator(config, categorical))])
    # Other trees take ordinal codes; unseen categories become missing, which they handle.
    ordinal = OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=np.nan, encoded_missing_value=np.nan
    )
    encode = ColumnTransformer(
        [("categorical", ordinal, categorical), ("numeric", "passthrough", numeric)],
        verbose_feature_names_out=False,
    )
    return Pipeline([("encode", encode), ("model", _estimator(config, []))])
