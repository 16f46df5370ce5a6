"""Prometheus metrics of an ingress replica: requests, latency, errors, batches, versions, RAG.

Each metric lives twice (kernel.metrics): in the replica's own registry (the API's `/metrics`,
one replica's view) and, inside a Serve replica, in Ray's metrics export: Ray's agent on every
node serves all replicas' series on its metrics port (8080 in the cluster, LAKESERVE_METRICS_PORT
locally) as `ray_lakeserve_*` with the replica's deployment, replica and application tags; the
scrape configs in k8s/ store them as the `lakeserve_*` names `/metrics` shows.
"""

from __future__ import annotations

import asyncio

from prometheus_client import Counter, Gauge, Histogram

from kernel.metrics import CONTENT_TYPE, MetricSet, Series, TwinMetric, status_class

__all__ = ["CONTENT_TYPE", "ServingMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_RAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
# Ray keeps a gauge series for 2 report intervals (2 x 10 s by default) after its last set.
GAUGE_REEXPORT_S = 5.0


class _Coded:
    """A metric labelled (..., code, status_class): callers give the code, the class follows."""

    def __init__(self, metric: TwinMetric) -> None:
        self.metric = metric
        self.local = metric.local

    def labels(self, *values: str) -> Series:
        return self.metric.labels(*values, status_class(int(values[-1])))


class ServingMetrics(MetricSet):
    """An ingress replica's metrics (one set per app, so apps and tests do not collide).

    `export`: also record into Ray's metrics export (in a Serve replica: `ray.serve.metrics`).
    """

    def __init__(self, export: bool = False) -> None:
        super().__init__(export)
        self.requests = _Coded(
            self.make(
                Counter,
                "lakeserve_model_requests",
                "Inference requests by model, version served, route and HTTP status.",
                ["model", "version", "route", "code", "status_class"],
            )
        )
        self.latency = self.make(
            Histogram,
            "lakeserve_model_request_duration_seconds",
            "Inference time from request received to response ready, by model and route.",
            ["model", "route"],
            buckets=_LATENCY_BUCKETS,
        )
        self.errors = self.make(
            Counter,
            "lakeserve_model_errors",
            "Inference requests answered with an error, by model and error type.",
            ["model", "type"],
        )
        self.batch_requests = self.make(
            Histogram,
            "lakeserve_model_batch_requests",
            "Requests predicted together in one model call.",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
        )
        self.batch_rows = self.make(
            Histogram,
            "lakeserve_model_batch_rows",
            "Rows predicted together in one model call.",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
        )
        self.out_of_domain = self.make(
            Counter,
            "lakeserve_model_out_of_domain_values",
            "Request values outside the domain the served version was trained on, by model, "
            "version and feature (answered with a warning, or refused for a strict model).",
            ["model", "version", "feature"],
        )
        self.version = self.make(
            Gauge,
            "lakeserve_model_loaded",
            "1 for the version each hosted model serves now.",
            ["model", "version"],
        )
        self.ready = self.make(
            Gauge,
            "lakeserve_model_ready",
            "1 when the hosted model has a version loaded and answers, 0 while it has none.",
            ["model"],
        )

        self.rag_requests = _Coded(
            self.make(
                Counter,
                "lakeserve_rag_requests",
                "RAG requests by route and HTTP status.",
                ["route", "code", "status_class"],
            )
        )
        self.rag_latency = self.make(
            Histogram,
            "lakeserve_rag_request_duration_seconds",
            "RAG time to the full answer (streamed: to the first event, sources known), by route.",
            ["route"],
            buckets=_RAG_BUCKETS,
        )
        self.rag_feedback = self.make(
            Counter,
            "lakeserve_rag_feedback",
            "Feedback events stored, by rating.",
            ["rating"],
        )

        self.request_log_events = self.make(
            Counter,
            "lakeserve_request_log_events",
            "Request-log rows by table and outcome: written, dropped (queue full or closed), "
            "rejected (did not fit the table), lost (not written by the drain's deadline).",
            ["table", "outcome"],
        )
        self.request_log_queue = self.make(
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
        """Re-send the gauges to Ray's export until cancelled (no-op without export)."""
        if not self._export:
            return
        while True:
            await asyncio.sleep(GAUGE_REEXPORT_S)
            self.reexport_gauges()

    def model_waiting(self, model: str) -> None:
        """Mark `model` as hosted without a loaded version (yet, or any more)."""
        self.ready.labels(model).set(0)

    def model_loaded(self, model: str, version: str) -> None:
        """Mark `version` as the one served for `model`."""
        for labels in self.version.series():  # drop the previous version's series
            if labels[0] == model and labels[1] != version:
                self.version.remove(*labels)
        self.version.labels(model, version).set(1)
        self.ready.labels(model).set(1)
