"""`lakeserve monitor`: compare a window of served requests with the champion's training data."""

from __future__ import annotations

import contextlib
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from prometheus_client import Gauge
from rich.table import Table

from kernel.console import err, out
from kernel.errors import ConfigError
from kernel.jobs import JobMetrics, job_run
from kernel.settings import TrackingSettings
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse

if TYPE_CHECKING:
    from training.monitor import Result

DURATION = re.compile(r"^(\d+)([mhd])$")
UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_time(text: str, now: datetime) -> datetime:
    """An ISO time (UTC unless it says otherwise) or a duration before `now` (30m, 24h, 7d).

    Raises:
        ConfigError: neither form.
    """
    match = DURATION.match(text.strip())
    if match:
        return now - timedelta(**{UNITS[match.group(2)]: int(match.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigError(
            f"{text!r} is neither an ISO time (2026-12-01T08:00) nor a duration (30m, 24h, 7d)"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def monitor_command(
    model: Annotated[str, typer.Option(help="Registered model name.")],
    alias: Annotated[str, typer.Option(help="The alias whose version is monitored.")] = "champion",
    since: Annotated[
        str, typer.Option(help="Window start: ISO time or a duration before --until (24h, 7d).")
    ] = "24h",
    until: Annotated[str | None, typer.Option(help="Window end: ISO time (default: now).")] = None,
    drift_threshold: Annotated[
        float, typer.Option(help="Drift score at which a column counts as drifted.", min=0)
    ] = 0.1,
    outside_share: Annotated[
        float,
        typer.Option(help="Alarm when more rows than this share are outside the domain.", min=0),
    ] = 0.01,
    error_ratio: Annotated[
        float, typer.Option(help="Alarm when live RMSE exceeds the holdout RMSE this many times.")
    ] = 1.5,
    min_rows: Annotated[
        int, typer.Option(help="Fewer logged rows in the window: nothing is measured.", min=1)
    ] = 200,
    reference_rows: Annotated[
        int, typer.Option(help="Training rows sampled as the reference.", min=100)
    ] = 20_000,
    experiment: Annotated[
        str, typer.Option(help="MLflow experiment of the monitor runs.")
    ] = "lakeserve-monitor",
    log: Annotated[
        bool, typer.Option("--log/--no-log", help="Log the run and report to MLflow.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    retrain_gate: Annotated[
        bool,
        typer.Option(
            help="Be the gate before retraining: exit 0 when a threshold is crossed, 9 when not "
            "(or when too few requests were measured)."
        ),
    ] = False,
) -> None:
    """Measure drift of the logged requests against the exact training data of the version.

    Exit codes: 0 measured and within thresholds (or too few requests to measure), 8 a
    threshold was crossed, 2 bad arguments, 3 no champion or no lineage, 4 MLflow unreachable.
    With --retrain-gate: 0 a threshold was crossed (retrain), 9 nothing to retrain for.
    """
    from kernel.errors import DriftDetected, GateFailed
    from kernel.tracking import unreachable_as_error
    from training.monitor import Thresholds, dumps, run_monitor
    from training.tracking import Tracker

    with job_run("monitor", model) as job:
        now = datetime.now(UTC)
        end = parse_time(until, now) if until else now
        start = parse_time(since, end)
        thresholds = Thresholds(
            drift=drift_threshold,
            outside_share=outside_share,
            error_ratio=error_ratio,
            min_rows=min_rows,
        )
        tracker = Tracker(TrackingSettings())
        with (
            contextlib.redirect_stdout(sys.stderr),
            unreachable_as_error(tracker.uri),
            err.status(f"measuring {model}@{alias} from {start:%Y-%m-%d %H:%M} to {end:%H:%M}"),
        ):
            result = run_monitor(
                tracker,
                Lakehouse(LakehouseSettings()),
                model,
                alias,
                start,
                end,
                thresholds,
                reference_rows=reference_rows,
                experiment=experiment,
                log_to_mlflow=log,
            )
        record(job, result)
        if as_json:
            out.print_json(dumps(result))
        else:
            _print(result)
        if retrain_gate:
            if not result.alarms:
                raise GateFailed(
                    f"{model} v{result.version}: no threshold crossed, nothing to retrain"
                )
            err.print(f"{model} v{result.version}: retrain: " + "; ".join(result.alarms))
        elif result.alarms:
            raise DriftDetected(f"{model} v{result.version}: " + "; ".join(result.alarms))


def record(job: JobMetrics, result: Result) -> None:
    """Add the window's verdict to the run's pushed metrics."""
    job.make(
        Gauge, "lakeserve_monitor_alarms", "Thresholds the window crossed (0: no alarm)."
    ).labels().set(len(result.alarms))
    job.make(Gauge, "lakeserve_monitor_window_rows", "Logged rows measured.").labels().set(
        result.window["rows"]
    )
    score = job.make(Gauge, "lakeserve_monitor_drift_score", "Drift score per column.", ["column"])
    limit = job.make(Gauge, "lakeserve_monitor_drift_threshold", "Its alarm threshold.", ["column"])
    for drift in result.drift:
        if drift["score"] is not None:
            score.labels(drift["column"]).set(drift["score"])
            limit.labels(drift["column"]).set(drift["threshold"])


def _print(result: Result) -> None:
    head = (
        f"{result.model} v{result.version} (@{result.alias}) against "
        f"{result.reference['table']}@v{result.reference['version']}: "
        f"{result.window['rows']:,} logged rows from {result.window['since'][:16]} "
        f"to {result.window['until'][:16]}"
    )
    out.print(head)
    if not result.measured:
        out.print("  not measured: too few requests in the window")
        return
    table = Table("column", "method", "score", "threshold", "drifted")
    for d in result.drift:
        score = "n/a" if d["score"] is None else f"{d['score']:.3f}"
        flag = "[red]yes[/red]" if d["drifted"] else "no"
        table.add_row(d["column"], d["method"], score, f"{d['threshold']:.3g}", flag)
    out.print(table)
    for name, detail in result.outside.items():
        top = ", ".join(f"{k} ({v})" for k, v in detail["top"].items())
        out.print(
            f"  outside the domain: {name} {detail['rows']} rows ({detail['share']:.1%}): "
            f"{top}; trained on {detail['domain']}"
        )
    if result.live_error:
        live = result.live_error
        ratio = f", {live['ratio']:.2f}x holdout" if "ratio" in live else ""
        out.print(f"  live error: {live['rows']} outcomes, RMSE {live['rmse']:.3f}{ratio}")
    if result.run_id:
        out.print(f"  report: MLflow run {result.run_id} (artifact monitor/drift_report.html)")
    out.print("  [red]alarm[/red]" if result.alarms else "  [green]no alarm[/green]")
