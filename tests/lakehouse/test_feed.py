"""The live trip feed and gold.live_error on real Delta tables (the platform test sends it)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from kernel.errors import ConfigError
from lakehouse.requests import (
    LIVE_ERROR,
    LOGS,
    PREDICTIONS,
    prediction_schema,
    refresh_live_error,
    refresh_silver,
)
from lakehouse.seed import GOLD, seed_trips
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakehouse.trips.features import FEATURES, TARGET
from lakehouse.trips.feed import OUTCOMES, live_trips, record_outcomes, request_id


def test_the_same_seed_and_day_are_the_same_trips_and_none_was_trained_on(tmp_path: Path) -> None:
    trips = live_trips(300, seed=7, day=0)
    assert len(trips) == 300 and trips["trip_id"].is_unique
    pd.testing.assert_frame_equal(trips, live_trips(300, seed=7, day=0))
    assert set(trips["trip_id"]).isdisjoint(live_trips(300, seed=7, day=1)["trip_id"])
    assert trips[[*FEATURES, TARGET]].notna().all().all()
    lake = Lakehouse(LakehouseSettings(home=tmp_path))
    seed_trips(lake, 5_000, seed=7)
    assert set(trips["trip_id"]).isdisjoint(
        lake.read(GOLD, columns=["trip_id"])["trip_id"].to_pylist()
    )


def test_shifts_change_only_what_they_name() -> None:
    clean = live_trips(400, seed=3)
    boroughs = live_trips(400, seed=3, shift="borough")
    longer = live_trips(400, seed=3, shift="distance")
    assert set(boroughs["pickup_borough"]) == {"Bronx", "Staten Island"}
    assert (longer["trip_distance"] == clean["trip_distance"] * 3).all()
    untouched = [c for c in FEATURES if c not in {"pickup_borough", "trip_distance"}]
    pd.testing.assert_frame_equal(boroughs[untouched], clean[untouched])
    # Shifted trips are other trips: their requests are not deduplicated into the clean ones.
    assert (boroughs["trip_id"] == clean["trip_id"] + "-borough").all()
    assert not set(longer["trip_id"]) & set(boroughs["trip_id"])
    with pytest.raises(ConfigError, match="unknown shift"):
        live_trips(10, shift="moon")


def test_live_error_joins_predictions_with_outcomes_per_model_version_and_day(
    tmp_path: Path,
) -> None:
    lake = Lakehouse(LakehouseSettings(home=tmp_path))
    trips = live_trips(40, seed=5)
    now = datetime.now(UTC)
    features = pa.struct([pa.field("trip_distance", pa.float64())])
    # Version 1 predicts the fare + 2 for the first 30 trips, version 2 the fare - 1 for the
    # rest; one refused request and one prediction whose outcome never came are left out.
    rows = [
        {"request_id": request_id(t), "row": 0, "received_at": now, "date": now.date(),
         "model": "fare", "version": "1" if i < 30 else "2", "endpoint": "predict",
         "status": 200, "latency_ms": 5.0, "features": {"trip_distance": 1.0},
         "prediction": fare + 2 if i < 30 else fare - 1}
        for i, (t, fare) in enumerate(zip(trips["trip_id"], trips[TARGET], strict=True))
    ]  # fmt: skip
    rows.append({**rows[0], "request_id": "refused", "status": 422, "prediction": None})
    rows.append({**rows[0], "request_id": "trip-unknown"})
    table = pa.Table.from_pylist(rows, schema=prediction_schema(features))
    lake.append(PREDICTIONS, table, metadata={"source": "test"}, partition_by=["date"])
    assert refresh_live_error(lake) is None  # no silver, no outcomes yet
    refresh_silver(lake, LOGS[0])
    record_outcomes(lake, trips)
    built = refresh_live_error(lake)
    assert built is not None and built.rows == 2 and not built.skipped
    error = lake.read(LIVE_ERROR).to_pandas().set_index("version")
    assert error.loc["1", "predictions"] == 30 and error.loc["2", "predictions"] == 10
    assert error.loc["1", "mae"] == pytest.approx(2) and error.loc["1", "bias"] == pytest.approx(2)
    assert error.loc["2", "rmse"] == pytest.approx(1) and error.loc["2", "bias"] == pytest.approx(
        -1
    )
    assert refresh_live_error(lake).skipped  # type: ignore[union-attr]
    # An outcome recorded twice (a re-run of the feed) counts once.
    record_outcomes(lake, trips)
    refresh_live_error(lake)
    assert lake.read(LIVE_ERROR).to_pandas()["predictions"].sum() == 40
    assert lake.read(OUTCOMES).num_rows == 80
