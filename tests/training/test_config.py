"""Loading and validating training config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from kernel.errors import ConfigError
from training import models
from training.config import load_config

CONFIGS = Path(__file__).parents[2] / "training" / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_are_valid_and_build_a_model(name: str) -> None:
    config = load_config(CONFIGS / name)
    pipeline = models.build(config.model, ["trip_distance"], ["rate_code"])
    assert pipeline.steps[-1][0] == "model"


def test_overrides_replace_nested_values_with_yaml_types() -> None:
    config = load_config(
        CONFIGS / "fare-hgb.yaml",
        ["model.params.max_iter=12", "data.version=3", "promotion.metric=mae"],
    )
    assert config.model.params["max_iter"] == 12
    assert config.data.version == 3
    assert config.promotion.metric == "mae"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: {type: xgboost}\ndata: {features: [a]}\n", "model.type: Input should be"),
        ("model: {type: ridge}\ndata: {features: []}\n", "data.features: List should have"),
        ("model: {type: ridge}\ndata: {features: [a], colour: red}\n", "data.colour: Extra"),
        ("model: {type: ridge}\ndata: {features: [a], table: trips}\n", "invalid table 'trips'"),
        ("model: {type: ridge}\ndata: {features: [a, a]}\n", "features must not repeat"),
        ("model: [ridge\n", "cannot read config file"),
        ("- just\n- a list\n", "must be a YAML mapping"),
    ],
)
def test_invalid_config_raises_config_error_naming_the_problem(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_config(write(tmp_path, text))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.params.learning_rate=-1", "learning_rate"),
        ("model.params.depth_of_field=3", "depth_of_field"),
    ],
)
def test_bad_hyperparameters_fail_before_training(override: str, message: str) -> None:
    config = load_config(CONFIGS / "fare-hgb.yaml", [override])
    with pytest.raises(ConfigError, match=message):
        models.build(config.model, ["trip_distance"], ["rate_code"])


def test_target_or_id_as_a_feature_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="fare_amount cannot be a feature"):
        load_config(CONFIGS / "fare-ridge.yaml", ["data.features=[trip_distance, fare_amount]"])


def test_override_that_is_not_yaml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="the value is not valid YAML"):
        load_config(CONFIGS / "fare-ridge.yaml", ["model.params.alpha=[1,"])


def test_model_name_is_taken_as_a_string() -> None:
    assert load_config(CONFIGS / "fare-ridge.yaml", model_name="2024").model_name == "2024"


def test_malformed_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"expected key\.path=value"):
        load_config(CONFIGS / "fare-hgb.yaml", ["model.params.max_iter"])


def test_calendar_features_must_be_features() -> None:
    with pytest.raises(ConfigError, match="calendar names pickup_dow, which are not features"):
        load_config(CONFIGS / "fare-ridge.yaml", ["data.features=[trip_distance]"])
    config = load_config(
        CONFIGS / "fare-ridge.yaml", ["data.features=[trip_distance]", "data.calendar=[]"]
    )
    assert config.data.calendar == []
