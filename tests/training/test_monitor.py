"""`lakeserve monitor`: windows, calendar matching and alarms (fast), then the statistics on real
trips against a real model's exact training data (a real MLflow server and Delta tables).

The platform test (tests/serving/test_request_log.py) runs the command end to end on logged
requests: exit codes, the MLflow run and its report.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest

from kernel.errors import ConfigError
from kernel.settings import TrackingSettings
from lakehouse.seed import seed_trips
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakehouse.trips.feed import live_trips
from tests.utils.platform import CONFIGS, train
from training import monitor
from training.config import load_config
from training.drift import PREDICTION
from training.monitor_cli import parse_time
from training.tracking import Tracker

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("24h", NOW - timedelta(hours=24)),
        ("7d", NOW - timedelta(days=7)),
        ("2026-11-30T08:00", datetime(2026, 11, 30, 8, tzinfo=UTC)),
        ("2026-11-30T08:00:00+01:00", datetime(2026, 11, 30, 7, tzinfo=UTC)),
    ],
)
def test_window_bounds_are_iso_times_or_durations(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "24", "-3h", "5y"])
def test_other_window_bounds_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="neither an ISO time") as raised:
        parse_time(text, NOW)
    assert raised.value.exit_code == 2


def test_the_reference_takes_the_windows_weekday_mix() -> None:
    ref = pd.DataFrame({"dow": np.repeat(np.arange(7), 100), "x": np.arange(700)})
    window = pd.DataFrame({"dow": [4] * 75 + [5] * 25 + [9] * 3})  # 9: never trained on
    matched = monitor.match_calendar(ref, window, ["dow"], seed=1)
    shares = matched["dow"].value_counts(normalize=True)
    assert set(shares.index) == {4, 5} and abs(shares[4] - 75 / 103 / (100 / 103)) < 0.01
    # No row twice: a repeated row makes the reference look larger, and its noise smaller.
    assert matched["x"].is_unique and len(matched) == 133
    assert matched.equals(monitor.match_calendar(ref, window, ["dow"], seed=1))  # seeded
    assert monitor.match_calendar(ref, window, [], seed=1) is ref


def test_alarms_name_what_crossed_which_threshold() -> None:
    result = monitor.Result("m", "champion", "3", {}, {}, measured=True)
    result.drift = [
        {"column": "a", "method": "Jensen-Shannon distance", "score": 0.4, "threshold": 0.1,
         "drifted": True},
        {"column": "b", "method": "Wasserstein distance (normed)", "score": 0.02,
         "threshold": 0.1, "drifted": False},
    ]  # fmt: skip
    result.outside, result.outside_share = {"c": {}}, 0.05
    result.live_error = {"rows": 80, "mae": 3.0, "rmse": 9.0, "ratio": 2.0}
    assert monitor.alarms(result, monitor.Thresholds()) == [
        "a drifted: Jensen-Shannon distance 0.400 >= 0.1",
        "5.0% of rows have values outside the training domain (c) > 1.0%",
        "live RMSE is 2.00x the holdout RMSE > 1.5x",
    ]
    quiet = monitor.Result("m", "champion", "3", {}, {}, measured=True)
    assert monitor.alarms(quiet, monitor.Thresholds()) == []


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, mlflow_server: str) -> dict[str, Any]:
    """Two weeks of seeded trips and a ridge model trained on them through the CLI."""
    home = tmp_path_factory.mktemp("monitor-home")
    seed_trips(Lakehouse(LakehouseSettings(home=home)), 30_000, seed=1)
    summary = train(home, mlflow_server, "fare-monitor", "fare-ridge.yaml")
    return {"home": home, "uri": mlflow_server, **summary}


def served_window(model: Any, day: int, shift: str = "none", rows: int = 1_000) -> pd.DataFrame:
    """What the request log holds for a day of the live feed: features and predictions."""
    trips = live_trips(rows, seed=11, day=day, shift=shift)
    features = load_config(CONFIGS / "fare-ridge.yaml").data.features
    frame = trips[features].copy()
    frame[PREDICTION] = np.asarray(model.predict(frame)).reshape(len(frame))
    return frame


def measure(
    champ: monitor.Champion, ref: pd.DataFrame, numeric: list[str], model: Any,
    current: pd.DataFrame,
) -> monitor.Result:  # fmt: skip
    matched = monitor.match_calendar(ref, current, champ.data.calendar)
    matched[PREDICTION] = np.asarray(model.predict(matched[champ.data.features]))
    result = monitor.Result(champ.model, champ.alias, champ.version, {}, {}, measured=False)
    monitor.assess(champ, matched, numeric, current, monitor.Thresholds(), result)
    result.alarms = monitor.alarms(result, monitor.Thresholds())
    return result


@pytest.mark.integration
def test_the_reference_is_the_champions_own_training_rows(trained: dict[str, Any]) -> None:
    tracker = Tracker(TrackingSettings.model_validate({"MLFLOW_TRACKING_URI": trained["uri"]}))
    tracker.connect()
    champ = monitor.champion(tracker, "fare-monitor", "champion")
    config = load_config(CONFIGS / "fare-ridge.yaml").data
    assert champ.data == config.model_copy(update={"version": trained["data"]["version"]})
    assert champ.data.calendar == ["pickup_dow"] and champ.holdout_rmse is not None
    lake = Lakehouse(LakehouseSettings(home=trained["home"]))
    ref, numeric = monitor.reference(lake, champ, 10**6)
    run = tracker.client.get_run(trained["run_id"])
    assert len(ref) == int(run.data.params["data.train_rows"])
    assert numeric == ["trip_distance", "pickup_hour"]  # passengers, weekdays: categories
    # The domain serving checks is the one of exactly these rows, all weekdays included.
    assert champ.domain is not None
    dow, distance = champ.domain.feature("pickup_dow"), champ.domain.feature("trip_distance")
    assert dow is not None and dow.high == 6
    assert distance is not None and distance.high == ref["trip_distance"].max()


@pytest.mark.integration
def test_twenty_clean_days_raise_no_alarm_and_injected_shifts_do(trained: dict[str, Any]) -> None:
    tracker = Tracker(TrackingSettings.model_validate({"MLFLOW_TRACKING_URI": trained["uri"]}))
    tracker.connect()
    champ = monitor.champion(tracker, "fare-monitor", "champion")
    lake = Lakehouse(LakehouseSettings(home=trained["home"]))
    ref, numeric = monitor.reference(lake, champ, 20_000)
    model = mlflow.pyfunc.load_model(f"models:/fare-monitor/{champ.version}")

    clean = [measure(champ, ref, numeric, model, served_window(model, day)) for day in range(20)]
    scores = pd.DataFrame([{d["column"]: d["score"] for d in r.drift} for r in clean])
    worst = json.dumps(scores.max().round(3).to_dict())  # said when it fails
    assert [r.alarms for r in clean] == [[]] * 20, worst
    assert scores.max().max() < 0.1, worst

    borough = measure(champ, ref, numeric, model, served_window(model, 30, "borough"))
    distance = measure(champ, ref, numeric, model, served_window(model, 30, "distance"))
    assert any(a.startswith("pickup_borough drifted") for a in borough.alarms), borough.alarms
    assert any(a.startswith("trip_distance drifted") for a in distance.alarms), distance.alarms
    assert any(a.startswith("prediction drifted") for a in distance.alarms)  # fares follow

    hostile = served_window(model, 0)
    hostile.loc[:29, "passenger_count"] = 99  # 3% of the rows: beyond anything trained on
    flagged = measure(champ, ref, numeric, model, hostile)
    assert flagged.outside["passenger_count"]["rows"] == 30
    assert flagged.outside["passenger_count"]["top"] == {"99": 30}
    assert any("outside the training domain (passenger_count)" in a for a in flagged.alarms)


def test_integers_made_floats_by_a_null_compare_as_the_same_categories() -> None:
    logged = pd.DataFrame({"passengers": [1.0, 2.0, None, 3.0], "borough": ["a", "b", "a", None]})
    same = monitor._comparable(logged, ["passengers", "borough"])
    passengers = same["passengers"].tolist()
    assert passengers[:2] + passengers[3:] == ["1", "2", "3"] and pd.isna(passengers[2])
    assert same["borough"].tolist()[:3] == ["a", "b", "a"]
