"""The training configuration file (YAML), validated before any data is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kernel.errors import ConfigError, invalid_config
from lakehouse.tables import TableRef

ModelType = Literal["hist_gradient_boosting", "random_forest", "ridge"]
Metric = Literal["rmse", "mae", "r2"]
GREATER_IS_BETTER: dict[str, bool] = {"rmse": False, "mae": False, "r2": True}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Which gold table and version to read, and how to split it."""

    table: str = Field(default="gold.trips", description="Source table as <layer>.<name>.")
    version: int | None = Field(default=None, ge=0, description="Delta version; latest if unset.")
    id_column: str = Field(default="trip_id", description="Stable row id; drives the split.")
    target: str = Field(default="fare_amount", description="Column to predict.")
    features: list[str] = Field(min_length=1, description="Input columns of the model.")
    holdout_fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    split_salt: str = Field(default="lakeserve", min_length=1, description="Changes the split.")
    max_train_rows: int | None = Field(default=None, ge=100, description="Cap on training rows.")
    calendar: list[str] = Field(
        default_factory=list,
        description="Features that follow the calendar (day of week): `lakeserve monitor` "
        "compares a window with training rows of the same mix of their values.",
    )

    @field_validator("table")
    @classmethod
    def _valid_table(cls, value: str) -> str:
        try:
            TableRef.parse(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("features")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("features must not repeat")
        return value

    @model_validator(mode="after")
    def _inputs_are_not_outputs(self) -> DataConfig:
        for column in (self.target, self.id_column):
            if column in self.features:
                raise ValueError(f"{column} cannot be a feature (it is the target or the row id)")
        unknown = [c for c in self.calendar if c not in self.features]
        if unknown:
            raise ValueError(f"calendar names {', '.join(unknown)}, which are not features")
        if not self.split_salt.isascii():
            raise ValueError("split_salt must be ASCII")
        return self


class ModelConfig(_Strict):
    """Estimator type and its hyperparameters (passed to the scikit-learn constructor)."""

    type: ModelType
    params: dict[str, Any] = Field(default_factory=dict)


class PromotionConfig(_Strict):
    """The gate: the new version takes `alias` only if it beats the holder on `metric`."""

    metric: Metric = "rmse"
    alias: str = Field(default="champion", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    challenger_alias: str = Field(default="challenger", pattern=r"^[A-Za-z][A-Za-z0-9_-]*$")
    min_improvement: float = Field(
        default=0.0, ge=0.0, description="Required margin over the champion, in metric units."
    )


class TrainConfig(_Strict):
    """A whole training run."""

    experiment: str = Field(default="fare-regression", min_length=1)
    model_name: str = Field(default="fare-regressor", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    data: DataConfig
    model: ModelConfig
    promotion: PromotionConfig = Field(default_factory=PromotionConfig)


def _apply_override(tree: dict[str, Any], override: str) -> None:
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"invalid --set {override!r}: expected key.path=value")
    *parents, leaf = key.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"invalid --set {override!r}: {part} is not a section")
        node = child
    try:
        node[leaf] = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid --set {override!r}: the value is not valid YAML") from exc


def load_config(
    path: Path, overrides: list[str] | None = None, model_name: str | None = None
) -> TrainConfig:
    """Read and validate a config file, applying `key.path=value` overrides (YAML values)."""
    try:
        tree = yaml.safe_load(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {path} not found") from exc
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from exc
    if not isinstance(tree, dict):
        raise ConfigError(f"config file {path} must be a YAML mapping")
    for override in overrides or []:
        _apply_override(tree, override)
    if model_name is not None:
        tree["model_name"] = model_name  # a name, never YAML: `--model-name 2024` stays a string
    try:
        return TrainConfig.model_validate(tree)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {invalid_config(exc).args[0]}") from exc
