"""Prometheus metrics of a serving replica: requests, latency, errors, batch sizes, versions.

Each metric lives twice: in the replica's own prometheus_client registry (the API's `/metrics`,
one replica's view) and, inside a Serve replica, in Ray's metrics export (`ray.serve.metrics`):
Ray's agent on every node serves all replicas' series on its metrics port (8080 in the cluster,
LAKESERVE_METRICS_PORT locally) beside Ray Serve's own, as `ray_lakeserve_*` with the replica's
deployment, replica and application tags. The scrape configs in k8s/ drop the `ray_` prefix, so
Prometheus stores the same `lakeserve_*` names as `/metrics` shows.
"""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "ServingMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_RAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Ray keeps a gauge series for 2 report intervals (2 x 10 s by default) after its last set.
GAUGE_REEXPORT_S = 5.0


class _Series:
    """One labelled series, recorded in the registry and, when exported, in Ray's metric."""

    __slots__ = ("_local", "_ray", "_tags", "value")

    def __init__(self, local: Any, ray: Any, tags: dict[str, str]) -> None:
        self._local, self._ray, self._tags = local, ray, tags
        self.value: float | None = None  # a gauge's last value

    def inc(self, amount: float = 1.0) -> None:
        self._local.inc(amount)
        if self._ray is not None:
            self._ray.inc(amount, tags=self._tags)

    def observe(self, value: float) -> None:
        self._local.observe(value)
        if self._ray is not None:
            self._ray.observe(value, tags=self._tags)

    def set(self, value: float) -> None:
        self.value = value
        self._local.set(value)
        if self._ray is not None:
            self._ray.set(value, tags=self._tags)

    def reexport(self) -> None:
        """Send a gauge's last value to Ray again (Ray drops a gauge series not set lately)."""
        if self._ray is not None and self.value is not None:
            self._ray.set(self.value, tags=self._tags)


class _Metric:
    """A prometheus_client metric with its Ray twin; `labels()` returns a cached series."""

    def __init__(self, local: Any, ray: Any, labels: tuple[str, ...]) -> None:
        self.local, self._ray, self._labels = local, ray, labels
        self._series: dict[tuple[str, ...], _Series] = {}

    def labels(self, *values: str) -> _Series:
        series = self._series.get(values)
        if series is None:
            local = self.local.labels(*values) if self._labels else self.local
            series = _Series(local, self._ray, dict(zip(self._labels, values, strict=True)))
            self._series[values] = series
        return series

    def series(self) -> list[tuple[str, ...]]:
        """The label values recorded so far."""
        return list(self._series)

    def reexport(self) -> None:
        """Send every series' last gauge value to Ray again."""
        for series in self._series.values():
            series.reexport()

    def remove(self, *values: str) -> None:
        """Drop a series from the registry; Ray's export cannot drop one, so it reads 0."""
        series = self._series.pop(values, None)
        if series is None:
            return
        if series._ray is not None:
            series._ray.set(0, tags=series._tags)
        self.local.remove(*values)


class ServingMetrics:
    """Metrics in a registry of their own (one per app, so apps and tests do not collide).

    `export`: also record into Ray's metrics export (in a Serve replica: `ray.serve.metrics`).
    """

    def __init__(self, export: bool = False) -> None:
        self.registry = CollectorRegistry()
        self._export = export
        self.requests = self._make(
            Counter,
            "lakeserve_requests",
            "Inference requests by model, version, endpoint and HTTP status.",
            ["model", "version", "endpoint", "status"],
        )
        self.latency = self._make(
            Histogram,
            "lakeserve_request_latency_seconds",
            "Time from request received to response ready, by model and endpoint.",
            ["model", "endpoint"],
            buckets=_LATENCY_BUCKETS,
        )
        self.errors = self._make(
            Counter,
            "lakeserve_errors",
            "Requests answered with an error, by error type.",
            ["model", "type"],
        )
        self.batch_requests = self._make(
            Histogram,
            "lakeserve_batch_requests",
            "Requests predicted together in one model call.",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
        )
        self.batch_rows = self._make(
            Histogram,
            "lakeserve_batch_rows",
            "Rows predicted together in one model call.",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
        )
        self.out_of_domain = self._make(
            Counter,
            "lakeserve_out_of_domain_values",
            "Request values outside the domain the served version was trained on, by model, "
            "version and feature (answered with a warning, or refused for a strict model).",
            ["model", "version", "feature"],
        )
        self.version = self._make(
            Gauge,
            "lakeserve_model_version",
            "1 for the version each hosted model serves now.",
            ["model", "version"],
        )

        self.rag_requests = self._make(
            Counter,
            "lakeserve_rag_requests",
            "RAG requests by endpoint and HTTP status.",
            ["endpoint", "status"],
        )
        self.rag_latency = self._make(
            Histogram,
            "lakeserve_rag_latency_seconds",
            "RAG time to the full answer (or, when streamed, to the first event), by endpoint.",
            ["endpoint"],
            buckets=_RAG_BUCKETS,
        )

        self.rag_feedback = self._make(
            Counter,
            "lakeserve_rag_feedback",
            "Feedback events stored, by rating.",
            ["rating"],
        )

        self.request_log_events = self._make(
            Counter,
            "lakeserve_request_log_events",
            "Request-log rows by table and outcome: written, dropped (queue full or closed), "
            "rejected (did not fit the table), lost (not written by the drain's deadline).",
            ["table", "outcome"],
        )
        self.request_log_queue = self._make(
            Gauge,
            "lakeserve_request_log_queue_rows",
            "Request-log rows waiting to be written, by table.",
            ["table"],
        )

    def observe_batch(self, model: str, version: str, requests: int, rows: int) -> None:
        """Record one model call."""
        self.batch_requests.labels(model, version).observe(requests)
        self.batch_rows.labels(model, version).observe(rows)

    async def keep_gauges_exported(self) -> None:
        """Re-send the gauges to Ray's export until cancelled (no-op without export).

        Ray evicts a gauge series that was not set within two report intervals; the version
        gauge is set once per load, so without this it would vanish from Prometheus.
        """
        if not self._export:
            return
        while True:
            await asyncio.sleep(GAUGE_REEXPORT_S)
            self.version.reexport()
            self.request_log_queue.reexport()

    def model_loaded(self, model: str, version: str) -> None:
        """Mark `version` as the one served for `model`."""
        for labels in self.version.series():  # drop the previous version's series
            if labels[0] == model and labels[1] != version:
                self.version.remove(*labels)
        self.version.labels(model, version).set(1)

    def _make(
        self,
        kind: type[Counter] | type[Histogram] | type[Gauge],
        name: str,
        documentation: str,
        labels: list[str] | None = None,
        buckets: tuple[float, ...] | None = None,
    ) -> _Metric:
        names = tuple(labels or ())
        extra: dict[str, Any] = {} if buckets is None else {"buckets": buckets}
        local = kind(name, documentation, names, registry=self.registry, **extra)
        return _Metric(local, self._ray_metric(kind, name, documentation, names, buckets), names)

    def _ray_metric(
        self,
        kind: type[Counter] | type[Histogram] | type[Gauge],
        name: str,
        documentation: str,
        names: tuple[str, ...],
        buckets: tuple[float, ...] | None,
    ) -> Any:
        if not self._export:
            return None
        from ray.serve import metrics as ray_metrics

        keys: Any = names  # Ray annotates tag_keys as Tuple[str] (one element): any length works
        if kind is Counter:
            return ray_metrics.Counter(name, documentation, tag_keys=keys)
        if kind is Gauge:
            return ray_metrics.Gauge(name, documentation, tag_keys=keys)
        return ray_metrics.Histogram(
            name, documentation, boundaries=list(buckets or ()), tag_keys=keys
        )

    def render(self) -> bytes:
        """Return the text exposition of every metric."""
        return generate_latest(self.registry)
