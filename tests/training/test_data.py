"""Reading the training table and splitting it deterministically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from kernel.errors import DataError
from lakehouse.seed import GOLD
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakehouse.trips.features import FEATURES, GOLD_SCHEMA
from training import data
from training.config import DataConfig


def frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"trip_id": [f"t{i}" for i in range(n)], "y": range(n)})


def test_split_is_deterministic_and_independent_of_row_order() -> None:
    rows = frame(5_000)
    train, holdout = data.split(rows, "trip_id", 0.2, "salt")
    shuffled = rows.sample(frac=1.0, random_state=1)
    _, holdout2 = data.split(shuffled, "trip_id", 0.2, "salt")
    assert set(holdout["trip_id"]) == set(holdout2["trip_id"])
    assert set(train["trip_id"]).isdisjoint(holdout["trip_id"])
    assert 0.17 < len(holdout) / len(rows) < 0.23


def test_a_row_keeps_its_side_when_the_table_grows() -> None:
    _, small = data.split(frame(1_000), "trip_id", 0.2, "salt")
    _, large = data.split(frame(4_000), "trip_id", 0.2, "salt")
    assert set(small["trip_id"]) <= set(large["trip_id"])


def test_another_salt_gives_another_split() -> None:
    _, first = data.split(frame(2_000), "trip_id", 0.2, "a")
    _, second = data.split(frame(2_000), "trip_id", 0.2, "b")
    assert set(first["trip_id"]) != set(second["trip_id"])


def test_max_train_rows_caps_training_deterministically() -> None:
    train, _ = data.split(frame(5_000), "trip_id", 0.2, "s", max_train_rows=500)
    again, _ = data.split(frame(5_000), "trip_id", 0.2, "s", max_train_rows=500)
    assert len(train) == 500
    assert list(train["trip_id"]) == list(again["trip_id"])


def test_a_split_with_an_empty_side_is_a_data_error() -> None:
    with pytest.raises(DataError, match="leaves an empty side"):
        data.split(frame(3), "trip_id", 0.05, "salt")


@pytest.fixture
def lake(tmp_path: Path) -> Lakehouse:
    return Lakehouse(LakehouseSettings(home=tmp_path))


def config(**changes: object) -> DataConfig:
    return DataConfig.model_validate({"features": FEATURES, **changes})


def test_an_empty_gold_table_is_a_data_error(lake: Lakehouse) -> None:
    lake.overwrite(GOLD, [], GOLD_SCHEMA, metadata={})
    with pytest.raises(DataError, match=r"table gold.trips@0 has no rows to train on"):
        data.load(lake, config())


def test_a_missing_table_is_a_data_error(lake: Lakehouse) -> None:
    with pytest.raises(DataError, match=r"table gold\.trips not found"):
        data.load(lake, config())


def test_a_non_numeric_target_is_a_data_error(lake: Lakehouse) -> None:
    schema = pa.schema([("trip_id", pa.string()), ("x", pa.float64()), ("y", pa.string())])
    batch = pa.RecordBatch.from_pylist([{"trip_id": "a", "x": 1.0, "y": "high"}], schema=schema)
    lake.overwrite(GOLD, [batch], schema, metadata={})
    with pytest.raises(DataError, match="target y must be numeric, not string"):
        data.load(lake, DataConfig(features=["x"], target="y"))
