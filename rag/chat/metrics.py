"""Prometheus metrics of the chat page process, on a port of their own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

_FIRST_EVENT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)


class ChatMetrics:
    """Questions by outcome, time to the first event, feedback by rating and outcome."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.questions = Counter(
            "lakeserve_chat_questions",
            "Questions asked, by outcome (answered, not_found, error).",
            ["outcome"],
            registry=self.registry,
        )
        self.first_event = Histogram(
            "lakeserve_chat_first_event_seconds",
            "Time from question to the API's first event (sources known).",
            buckets=_FIRST_EVENT_BUCKETS,
            registry=self.registry,
        )
        self.feedback = Counter(
            "lakeserve_chat_feedback",
            "Feedback sent, by rating and outcome (stored, error).",
            ["rating", "outcome"],
            registry=self.registry,
        )

    def serve(self, host: str, port: int) -> None:
        """Expose the metrics over HTTP (GET /metrics) in a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)


# One per process: the launcher serves it, every session of the page counts into it.
METRICS = ChatMetrics()
