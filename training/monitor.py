"""`lakeserve monitor`: a window of served requests against the champion's own training data.

The reference is exact: the registered version names the gold table and Delta version it was
trained on and its run the split (id column, holdout fraction, salt, row cap), so the training
rows are read again at that version and split the same way. The window is the deduplicated
request log (silver.predictions) of the model; outcomes, where they arrived, give live error.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import structlog

from kernel.domain import Domain, from_metadata
from kernel.errors import ConfigError, DataError
from lakehouse.requests import LOGS, refresh_silver
from lakehouse.tables import Lakehouse
from lakehouse.trips.feed import OUTCOMES
from training import data
from training.config import DataConfig
from training.drift import PREDICTION, ColumnDrift, measure
from training.tracking import Tracker

log = structlog.get_logger(__name__)
EXPERIMENT = "lakeserve-monitor"
CATEGORY_LIMIT = 10


@dataclass(frozen=True)
class Thresholds:
    """When a window raises the alarm."""

    drift: float = 0.1  # a column's distance (evidently's Wasserstein normed / Jensen-Shannon)
    outside_share: float = 0.01  # rows with a value outside the training domain
    error_ratio: float = 1.5  # live RMSE over the version's holdout RMSE
    min_rows: int = 200  # fewer logged rows: nothing is measured
    min_outcomes: int = 50  # fewer outcomes: no live error


@dataclass(frozen=True)
class Champion:
    """The version an alias points at, with what it was trained on."""

    model: str
    alias: str
    version: str
    run_id: str
    model_id: str | None
    data: DataConfig
    holdout_rmse: float | None
    domain: Domain | None


@dataclass
class Result:
    """What one monitor run measured and decided."""

    model: str
    alias: str
    version: str
    reference: dict[str, Any]
    window: dict[str, Any]
    measured: bool
    drift: list[dict[str, Any]] = field(default_factory=list)
    outside: dict[str, dict[str, Any]] = field(default_factory=dict)
    outside_share: float = 0.0
    live_error: dict[str, float] | None = None
    alarms: list[str] = field(default_factory=list)
    run_id: str | None = None

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def champion(tracker: Tracker, model: str, alias: str) -> Champion:
    """Find the version behind `alias` and what its training run read.

    Raises:
        DataError: no version holds the alias, or its run lacks the lineage training logs.
    """
    holder = tracker.alias_holder(model, alias)
    if holder is None:
        raise DataError(f"no version of {model} holds @{alias}: train and promote one first")
    run = tracker.client.get_run(holder.run_id) if holder.run_id else None
    params = run.data.params if run else {}
    needed = ["data.table", "data.version", "data.id_column", "data.target", "data.features"]
    missing = [p for p in needed if p not in params]
    if missing:
        raise DataError(
            f"{model} v{holder.version} was not trained by `lakeserve train` (its run lacks "
            f"{', '.join(missing)}): there is no training data to compare with"
        )
    cap = params.get("data.max_train_rows", "None")
    config = DataConfig(
        table=params["data.table"],
        version=int(params["data.version"]),
        id_column=params["data.id_column"],
        target=params["data.target"],
        features=params["data.features"].split(","),
        holdout_fraction=float(params.get("data.holdout_fraction", 0.2)),
        split_salt=params.get("data.split_salt", "lakeserve"),
        max_train_rows=None if cap in {"None", ""} else int(cap),
        calendar=[c for c in params.get("data.calendar", "").split(",") if c],
    )
    info = mlflow.models.get_model_info(f"models:/{model}/{holder.version}")
    rmse = run.data.metrics.get("rmse") if run else None
    return Champion(
        model=model,
        alias=alias,
        version=str(holder.version),
        run_id=str(holder.run_id),
        model_id=getattr(holder, "model_id", None),
        data=config,
        holdout_rmse=rmse,
        domain=from_metadata(info.metadata),
    )


def reference(lake: Lakehouse, champ: Champion, rows: int) -> tuple[pd.DataFrame, list[str]]:
    """The champion's training rows (a seeded sample of at most `rows`) and its numeric features.

    Returns the frame of features and the names of the features compared as numbers. Strings,
    booleans and integers of at most CATEGORY_LIMIT values (passengers, weekdays) are compared
    as categories: a distance between frequencies, where a normed Wasserstein distance of a
    handful of integers swings past its threshold on unchanged traffic.
    """
    dataset = data.load(lake, champ.data)
    train, _ = data.split(
        dataset.frame,
        champ.data.id_column,
        champ.data.holdout_fraction,
        champ.data.split_salt,
        champ.data.max_train_rows,
    )
    # In id order first: the same rows in the same order whatever order the files are read in
    # (the calendar match and the null thresholds draw by position).
    train = train.sort_values(champ.data.id_column, kind="stable")
    if len(train) > rows:
        train = train.sample(rows, random_state=champ.data.version or 0)
    numeric = [
        n for n in dataset.numeric if train[n].dtype.kind in "iuf" and not _few_integers(train[n])
    ]
    return train[champ.data.features].reset_index(drop=True), numeric


def match_calendar(
    ref: pd.DataFrame, current: pd.DataFrame, columns: list[str], seed: int = 0
) -> pd.DataFrame:
    """Resample the reference to the window's mix of calendar values (e.g. its weekdays).

    A day of traffic has one weekday: against all seven days of training, every daily window
    would "drift" on the calendar and on what follows it (weekend trips run faster). Each
    combination of `columns` seen in both gets the share it has in the window; combinations
    the training rows never had are left to the domain check.
    """
    present = [c for c in columns if c in ref.columns and c in current.columns]
    if not present or ref.empty or current.empty:
        return ref
    shares = current.groupby(present, dropna=False).size() / len(current)
    groups = ref.groupby(present, dropna=False).indices
    known = {key: share for key, share in shares.items() if key in groups}
    if not known:
        return ref
    # Without replacement: as many rows as the scarcest combination allows at its share. A row
    # drawn twice would make the reference look larger (and its noise smaller) than it is.
    size = min(len(ref), min(len(groups[key]) / share for key, share in known.items()))
    rng = np.random.default_rng(seed)
    picked = [
        rng.choice(groups[key], size=min(len(groups[key]), max(1, round(share * size))),
                   replace=False)
        for key, share in known.items()
    ]  # fmt: skip
    return ref.iloc[np.concatenate(picked)].reset_index(drop=True)


def _few_integers(series: pd.Series) -> bool:
    return series.dtype.kind in "iu" and series.nunique() <= CATEGORY_LIMIT


def window(lake: Lakehouse, model: str, since: datetime, until: datetime) -> pd.DataFrame:
    """Logged rows the model answered (status 200) between `since` and `until`, features flat."""
    refresh_silver(lake, LOGS[0])
    silver = LOGS[0].silver
    if not lake.exists(silver):
        return pd.DataFrame()
    dataset = lake.dataset(silver)
    wanted = (
        (pc.field("model") == model)
        & (pc.field("status") == 200)
        & (pc.field("date") >= since.astimezone(UTC).date())  # partitions are UTC dates
        & (pc.field("received_at") >= since)
        & (pc.field("received_at") < until)
    )
    names = set(dataset.schema.names)
    columns = [
        c
        for c in ["request_id", "row", "version", "received_at", "prediction", "out_of_domain",
                  "features"]
        if c in names
    ]  # fmt: skip
    table = dataset.to_table(columns=columns, filter=wanted)
    if table.num_rows == 0 or "features" not in names:
        return pd.DataFrame()
    flat = table.flatten()
    frame = flat.to_pandas()
    return frame.rename(columns=lambda c: c.removeprefix("features."))


def live_error(lake: Lakehouse, frame: pd.DataFrame) -> tuple[int, float, float]:
    """Rows of the window whose outcome arrived, with their MAE and RMSE."""
    if not lake.exists(OUTCOMES) or frame.empty:
        return 0, float("nan"), float("nan")
    outcomes = lake.read(OUTCOMES, columns=["request_id", "fare_amount", "observed_at"])
    actual = (
        outcomes.to_pandas()
        .sort_values("observed_at")
        .drop_duplicates("request_id")
        .set_index("request_id")["fare_amount"]
    )
    single = frame[(frame["row"] == 0) & frame["prediction"].notna()]
    joined = single.join(actual, on="request_id", how="inner")
    if joined.empty:
        return 0, float("nan"), float("nan")
    error = joined["prediction"].to_numpy(float) - joined["fare_amount"].to_numpy(float)
    return len(joined), float(np.mean(np.abs(error))), float(np.sqrt(np.mean(error**2)))


def compare(
    champ: Champion,
    ref: pd.DataFrame,
    numeric: list[str],
    current: pd.DataFrame,
    thresholds: Thresholds,
) -> tuple[list[ColumnDrift], dict[str, dict[str, Any]], float, Any]:
    """Drift per column, values outside the training domain, and the report.

    `ref` and `current` both carry the features and a `prediction` column.
    """
    features = champ.data.features
    categorical = [f for f in features if f not in numeric]
    reference_frame, current_frame = (
        _comparable(ref, categorical),
        _comparable(current, categorical),
    )
    measured = measure(reference_frame, current_frame, numeric, categorical, thresholds.drift)
    domain = champ.domain or Domain.from_frame(ref, features)
    arrays = {f: current[f].to_numpy() for f in features}
    outside = domain.outside(arrays)
    details: dict[str, dict[str, Any]] = {}
    for name, mask in outside.masks.items():
        values = pd.Series(current[name].to_numpy()[mask]).astype(str).value_counts()
        feature = domain.feature(name)
        details[name] = {
            "rows": int(mask.sum()),
            "share": float(mask.mean()),
            "top": {str(k): int(v) for k, v in values.head(5).items()},
            "domain": feature.describe() if feature else "",
        }
    share = outside.rows_outside() / max(len(current), 1)
    return measured.columns, details, share, measured.snapshot


def run_monitor(
    tracker: Tracker,
    lake: Lakehouse,
    model: str,
    alias: str,
    since: datetime,
    until: datetime,
    thresholds: Thresholds,
    reference_rows: int = 20_000,
    experiment: str = EXPERIMENT,
    log_to_mlflow: bool = True,
) -> Result:
    """Measure one window and log it; the caller turns `alarms` into the exit code."""
    if since >= until:
        raise ConfigError(f"the window is empty: --since {since:%Y-%m-%dT%H:%M} is not before "
                          f"--until {until:%Y-%m-%dT%H:%M}")  # fmt: skip
    tracker.connect()
    champ = champion(tracker, model, alias)
    current = window(lake, model, since, until)
    result = Result(
        model=model,
        alias=alias,
        version=champ.version,
        reference={"table": champ.data.table, "version": champ.data.version, "rows": 0},
        window={
            "since": since.isoformat(),
            "until": until.isoformat(),
            "rows": len(current),
            "versions": sorted(current["version"].dropna().unique().tolist()) if len(current)
            else [],
        },
        measured=False,
    )  # fmt: skip
    missing = [f for f in champ.data.features if f not in current.columns]
    if len(current) and missing:
        raise DataError(
            f"the logged requests of {model} lack {', '.join(missing)}: the champion takes "
            "other inputs than the versions that served this window"
        )
    if len(current) < thresholds.min_rows:
        log.info("too few requests to measure", rows=len(current), needed=thresholds.min_rows)
        return result
    ref, numeric = reference(lake, champ, reference_rows)
    ref = match_calendar(ref, current, champ.data.calendar, seed=champ.data.version or 0)
    ref[PREDICTION] = np.asarray(
        tracker.score_version(model, champ.version, ref[champ.data.features])
    ).reshape(len(ref), -1)[:, 0]
    snapshot = assess(champ, ref, numeric, current, thresholds, result)
    count, mae, rmse = live_error(lake, current)
    if count >= thresholds.min_outcomes:
        result.live_error = {"rows": count, "mae": mae, "rmse": rmse}
        if champ.holdout_rmse:
            result.live_error["ratio"] = rmse / champ.holdout_rmse
    result.alarms = alarms(result, thresholds)
    if log_to_mlflow:
        result.run_id = _log(tracker, champ, result, snapshot, experiment)
    return result


def assess(
    champ: Champion,
    ref: pd.DataFrame,
    numeric: list[str],
    current: pd.DataFrame,
    thresholds: Thresholds,
    result: Result,
) -> Any:
    """Record drift and values outside the domain in `result`; return evidently's snapshot.

    `ref` (already matched to the window's calendar) and `current` carry the features and the
    `prediction` column.
    """
    drifts, outside, share, snapshot = compare(champ, ref, numeric, current, thresholds)
    result.reference.update(rows=len(ref), matched_on=champ.data.calendar)
    result.measured = True
    result.drift = [
        {**asdict(d), "score": d.score if np.isfinite(d.score) else None, "drifted": d.drifted}
        for d in drifts
    ]
    result.outside, result.outside_share = outside, share
    return snapshot


def _comparable(frame: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    """Categories as plain Python objects on both sides (Arrow strings vs object strings)."""
    out = frame.copy()
    for name in categorical:
        column = out[name]
        if column.dtype.kind == "f" and (column.dropna() % 1 == 0).all():
            column = column.astype("Int64")  # a null in the log made integers floats: 2.0 is 2
        out[name] = column.astype(object).astype(str)
    return out


def alarms(result: Result, thresholds: Thresholds) -> list[str]:
    """What in `result` crosses `thresholds`, one sentence each (empty: no alarm)."""
    said = [
        f"{d['column']} drifted: {d['method']} {d['score']:.3f} >= {d['threshold']:.3g}"
        for d in result.drift
        if d["drifted"]
    ]
    if result.outside_share > thresholds.outside_share:
        names = ", ".join(result.outside)
        said.append(
            f"{result.outside_share:.1%} of rows have values outside the training domain "
            f"({names}) > {thresholds.outside_share:.1%}"
        )
    ratio = (result.live_error or {}).get("ratio")
    if ratio is not None and ratio > thresholds.error_ratio:
        said.append(f"live RMSE is {ratio:.2f}x the holdout RMSE > {thresholds.error_ratio:g}x")
    return said


def _log(tracker: Tracker, champ: Champion, result: Result, snapshot: Any, experiment: str) -> str:
    """One MLflow run per window: metrics (also on the version's logged model), the report."""
    metrics: dict[str, float] = {
        "window_rows": float(result.window["rows"]),
        "drifted_columns": float(sum(d["drifted"] for d in result.drift)),
        "outside_share": result.outside_share,
        "alarm": float(bool(result.alarms)),
    }
    metrics.update(
        {f"drift.{d['column']}": float(d["score"]) for d in result.drift if d["score"] is not None}
    )
    metrics.update({f"outside.{name}": float(v["share"]) for name, v in result.outside.items()})
    for key, value in (result.live_error or {}).items():
        metrics[f"live_{key}"] = float(value)
    tags = {
        "model.name": champ.model,
        "model.version": champ.version,
        "model.alias": champ.alias,
        "data.table": champ.data.table,
        "data.version": str(champ.data.version),
        "window.since": result.window["since"],
        "window.until": result.window["until"],
        "monitor.alarm": "true" if result.alarms else "false",
    }
    experiment_id = tracker.experiment(experiment)
    name = f"{champ.model}-v{champ.version}-{result.window['until'][:16]}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.set_tags(tags)
        mlflow.log_metrics(metrics)
        if champ.model_id:  # the registered version's logged model shows them too
            mlflow.log_metrics(metrics, model_id=champ.model_id)
        with tempfile.TemporaryDirectory() as scratch:
            html = Path(scratch) / "drift_report.html"
            snapshot.save_html(str(html))
            mlflow.log_artifact(str(html), "monitor")
            mlflow.log_dict(result.summary(), "monitor/result.json")
    tracker.tag_version(
        champ.model,
        champ.version,
        {"monitor.last_run": run.info.run_id, "monitor.alarm": tags["monitor.alarm"]},
    )
    return str(run.info.run_id)


def dumps(result: Result) -> str:
    """The result as JSON (NaN-free)."""
    return json.dumps(result.summary(), default=str, allow_nan=False)
