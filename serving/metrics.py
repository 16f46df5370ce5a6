"""Prometheus metrics of a serving replica: requests, latency, errors, batch sizes, versions."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE", "ServingMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_RAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServingMetrics:
    """Metrics in a registry of their own (one per app, so apps and tests do not collide)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lakeserve_requests",
            "Inference requests by model, version, endpoint and HTTP status.",
            ["model", "version", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "lakeserve_request_latency_seconds",
            "Time from request received to response ready, by model and endpoint.",
            ["model", "endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "lakeserve_errors",
            "Requests answered with an error, by error type.",
            ["model", "type"],
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "lakeserve_batch_requests",
            "Requests predicted together in one model call.",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "lakeserve_batch_rows",
            "Rows predicted together in one model call.",
            ["model", "version"],
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.version = Gauge(
            "lakeserve_model_version",
            "1 for the version each hosted model serves now.",
            ["model", "version"],
            registry=self.registry,
        )

        self.rag_requests = Counter(
            "lakeserve_rag_requests",
            "RAG requests by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=self.registry,
        )
        self.rag_latency = Histogram(
            "lakeserve_rag_latency_seconds",
            "RAG time to the full answer (or, when streamed, to the first event), by endpoint.",
            ["endpoint"],
            buckets=_RAG_BUCKETS,
            registry=self.registry,
        )

        self.rag_feedback = Counter(
            "lakeserve_rag_feedback",
            "Feedback events stored, by rating.",
            ["rating"],
            registry=self.registry,
        )

    def observe_batch(self, model: str, version: str, requests: int, rows: int) -> None:
        """Record one model call."""
        self.batch_requests.labels(model, version).observe(requests)
        self.batch_rows.labels(model, version).observe(rows)

    def model_loaded(self, model: str, version: str) -> None:
        """Mark `version` as the one served for `model`."""
        for labels in list(self.version._metrics):  # drop the previous version's series
            if labels[0] == model:
                self.version.remove(*labels)
        self.version.labels(model, version).set(1)

    def render(self) -> bytes:
        """Return the text exposition of every metric."""
        return generate_latest(self.registry)
