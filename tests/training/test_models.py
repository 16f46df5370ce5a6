"""The gradient-boosting pipeline encodes categories once, inside the trees."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OrdinalEncoder

from training import models
from training.config import ModelConfig

NUMERIC = ["distance", "hour"]
CATEGORICAL = ["borough", "rate"]


def frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({
        "distance": rng.uniform(0, 20, n),
        "hour": rng.integers(0, 24, n),
        "borough": pd.array(rng.choice(["Bronx", "Brooklyn", "Queens"], n), dtype="string"),
        "rate": rng.choice(["Standard", "JFK"], n).astype(object),
    })  # fmt: skip
    queens = (x["borough"] == "Queens").to_numpy(dtype=float)
    jfk = (x["rate"] == "JFK").to_numpy(dtype=float)
    y = 3 * x["distance"].to_numpy() + queens * 5 + jfk * 20
    return x, y + rng.normal(0, 1, n)


def test_hgb_predicts_as_with_an_outer_ordinal_encoder_unknown_categories_included() -> None:
    config = ModelConfig(type="hist_gradient_boosting", params={"max_iter": 40})
    pipeline = models.build(config, NUMERIC, CATEGORICAL)
    assert [name for name, _ in pipeline.steps] == ["model"]  # no second encoder
    x, y = frame(2000, 0)
    pipeline.fit(x, y)
    # The former pipeline: codes from an OrdinalEncoder, then the trees' categorical splits.
    encode = ColumnTransformer(
        [("c", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                              encoded_missing_value=np.nan), CATEGORICAL),
         ("n", "passthrough", NUMERIC)],
        verbose_feature_names_out=False,
    )  # fmt: skip
    former = Pipeline([
        ("encode", encode),
        ("model", HistGradientBoostingRegressor(
            categorical_features=[0, 1], max_iter=40, random_state=0)),
    ]).fit(x, y)  # fmt: skip
    holdout, _ = frame(300, 1)
    holdout.loc[:9, "borough"] = "Atlantis"  # never seen: treated as missing by both
    holdout.loc[10:19, "rate"] = None
    np.testing.assert_allclose(pipeline.predict(holdout), former.predict(holdout), rtol=1e-12)
    assert np.isfinite(pipeline.predict(holdout)).all()
