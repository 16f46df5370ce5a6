"""Batch jobs' metrics (training, monitoring, ingestion), pushed to a Prometheus Pushgateway.

A Job's pod is gone before Prometheus would scrape it, so each run pushes its outcome once, when
it ends, grouped by `job` (train, monitor, ingest) and `name` (the model or collection): when it
ran, how long, its exit code (the CLI's: 0 ok, 8 drift, 9 gate...), and when it last succeeded.
The push adds to the group (POST): a failed run leaves the last success's timestamp in place.
Without LAKESERVE_PUSHGATEWAY_URL nothing is pushed; a push that fails is a warning, never a
different exit code.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import structlog
import typer
from prometheus_client import CollectorRegistry, Gauge, pushadd_to_gateway
from pydantic import Field, ValidationError

from kernel.metrics import MetricSet
from kernel.settings import Settings

log = structlog.get_logger(__name__)

PUSH_TIMEOUT_S = 5.0


class PushSettings(Settings):
    """Where batch jobs push their metrics."""

    pushgateway_url: str | None = Field(
        default=None,
        description="Prometheus Pushgateway (e.g. http://pushgateway:9091) that training, "
        "monitor and ingest runs push their outcome to; unset: no push.",
    )


def exit_code(exc: BaseException | None) -> int:
    """Return the exit code the CLI gives for how a run ended (None: it did not raise)."""
    if exc is None:
        return 0
    if isinstance(exc, ValidationError):
        return 2
    code = getattr(exc, "exit_code", None)  # LakeserveError, typer.Exit, click's usage errors
    if isinstance(code, int):
        return code
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else 1
    if isinstance(exc, KeyboardInterrupt | typer.Abort):
        return 130
    return 1


class JobMetrics(MetricSet):
    """One run's metrics; callers add their own (`make`) before the run ends."""

    def __init__(self, job: str, name: str) -> None:
        super().__init__()
        self.job, self.name = job, name
        self.started = time.time()

    def finish(self, code: int) -> list[CollectorRegistry]:
        """Record the outcome; return what to push (the success stamp only when it succeeded)."""
        ended = time.time()
        for metric, text, value in (
            ("lakeserve_job_last_run_timestamp_seconds", "When the run ended, epoch s.", ended),
            ("lakeserve_job_duration_seconds", "How long the run took.", ended - self.started),
            ("lakeserve_job_exit_code", "The run's exit code (0 succeeded).", float(code)),
        ):
            self.make(Gauge, metric, text).labels().set(value)
        pushes = [self.registry]
        if code == 0:
            success = CollectorRegistry()
            Gauge(
                "lakeserve_job_last_success_timestamp_seconds",
                "When the last successful run ended, epoch s.",
                registry=success,
            ).set(ended)
            pushes.append(success)
        return pushes


@contextmanager
def job_run(job: str, name: str, settings: PushSettings | None = None) -> Iterator[JobMetrics]:
    """Run a job's body; when it ends (however), push its metrics if a Pushgateway is set."""
    metrics = JobMetrics(job, name)
    failure: BaseException | None = None
    try:
        yield metrics
    except BaseException as exc:
        failure = exc
        raise
    finally:
        push(metrics, exit_code(failure), settings or PushSettings())


def push(metrics: JobMetrics, code: int, settings: PushSettings) -> None:
    """Push one run's metrics to the gateway; log (never raise) when it cannot."""
    registries = metrics.finish(code)
    if not settings.pushgateway_url:
        return
    key = {"name": metrics.name}
    try:
        for registry in registries:
            pushadd_to_gateway(
                settings.pushgateway_url,
                job=metrics.job,
                registry=registry,
                grouping_key=key,
                timeout=PUSH_TIMEOUT_S,
            )
    except OSError as exc:  # URLError, refused, timeout: the run's outcome stands
        log.warning(
            "metrics push failed", gateway=settings.pushgateway_url, job=metrics.job, error=str(exc)
        )
