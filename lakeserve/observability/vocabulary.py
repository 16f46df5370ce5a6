"""Every metric the platform exports, by where it comes from: the one list docs and tests use.

The long-running components' metrics are read from their own metric sets (so this list cannot
drift from the code); the batch jobs' pushed metrics are listed here and checked against real
runs by the tests. `python -m lakeserve.observability.vocabulary` prints the README table.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from rag.chat.metrics import ChatMetrics
from rag.metrics import IndexMetrics
from serving.metrics import ServingMetrics

JOB_LABELS = ("job", "name")  # the Pushgateway grouping key of every pushed series


@dataclass(frozen=True)
class Metric:
    """One metric family as Prometheus stores it."""

    name: str  # the family name: counters without _total, histograms without _bucket...
    kind: str  # counter, gauge, histogram
    labels: tuple[str, ...]
    help: str
    source: str  # which component exports it

    @property
    def series(self) -> tuple[str, ...]:
        """Return the sample names Prometheus stores for this family."""
        if self.kind == "counter":
            return (f"{self.name}_total",)
        if self.kind == "histogram":
            return tuple(f"{self.name}_{s}" for s in ("bucket", "sum", "count"))
        return (self.name,)


# Pushed by `lakeserve train`, `lakeserve monitor` and `lakeserve rag ingest` (kernel.jobs).
PUSHED: tuple[tuple[str, tuple[str, ...], str, str], ...] = (
    ("lakeserve_job_last_run_timestamp_seconds", (), "When the run ended, epoch s.", "every"),
    ("lakeserve_job_duration_seconds", (), "How long the run took.", "every"),
    ("lakeserve_job_exit_code", (), "The run's exit code (0 succeeded).", "every"),
    (
        "lakeserve_job_last_success_timestamp_seconds",
        (),
        "When the last successful run ended, epoch s.",
        "every",
    ),
    ("lakeserve_training_promoted", (), "1 when the run's version took the alias.", "train"),
    ("lakeserve_training_holdout", ("metric",), "The run's holdout metrics.", "train"),
    ("lakeserve_monitor_alarms", (), "Thresholds the window crossed (0: no alarm).", "monitor"),
    ("lakeserve_monitor_window_rows", (), "Logged rows measured.", "monitor"),
    ("lakeserve_monitor_drift_score", ("column",), "Drift score per column.", "monitor"),
    ("lakeserve_monitor_drift_threshold", ("column",), "Its alarm threshold.", "monitor"),
    ("lakeserve_rag_ingest_chunks", ("outcome",), "Chunks by outcome.", "ingest"),
    (
        "lakeserve_rag_ingest_changed_timestamp_seconds",
        (),
        "When the collection's chunks last changed, as the run left them, epoch s.",
        "ingest",
    ),
)

# Ray's and Kubernetes' own series that rules and dashboards use (not Lakeserve's to rename).
EXTERNAL = (
    "ray_serve_autoscaling_desired_replicas",
    "ray_serve_autoscaling_target_replicas",
    "ray_serve_deployment_replica_healthy",
    "ray_serve_num_ongoing_requests_at_replicas",
    "kube_job_status_failed",
    "up",
)


def _families(registry: CollectorRegistry, source: str) -> list[Metric]:
    found = []
    for family in registry.collect():
        labels: tuple[str, ...] = ()
        # prometheus_client keeps a metric's label names private; its samples carry them only
        # once a series exists, and a vocabulary is read before any does.
        for collector in registry._names_to_collectors.values():
            if getattr(collector, "_name", None) == family.name:
                labels = tuple(getattr(collector, "_labelnames", ()))
                break
        found.append(Metric(family.name, family.type, labels, family.documentation, source))
    return found


def vocabulary() -> list[Metric]:
    """Return every metric family of the platform, in the README's order."""
    metrics = _families(ServingMetrics().registry, "ingress replica")
    metrics += _families(IndexMetrics().registry, "RAG replica")
    metrics += _families(ChatMetrics().registry, "chat page")
    metrics += [
        Metric(name, "gauge", (*labels, *JOB_LABELS), text, f"{source} job (pushed)")
        for name, labels, text, source in PUSHED
    ]
    return metrics


def series_names() -> set[str]:
    """Return every sample name Prometheus stores for the platform's own metrics."""
    return {name for metric in vocabulary() for name in metric.series}


def table() -> str:
    """Return the README's metrics table (markdown)."""
    rows = ["| metric | type | labels | exported by | meaning |", "|---|---|---|---|---|"]
    for m in vocabulary():
        name = m.series[0] if m.kind == "counter" else m.name
        labels = ", ".join(m.labels) or "-"
        rows.append(f"| `{name}` | {m.kind} | {labels} | {m.source} | {m.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    import sys

    sys.stdout.write(table() + "\n")
