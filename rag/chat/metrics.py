"""Prometheus metrics of the chat page process, on a port of their own."""

from __future__ import annotations

from prometheus_client import Counter, Histogram, start_http_server

from kernel.metrics import MetricSet

_FIRST_EVENT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0)


class ChatMetrics(MetricSet):
    """Questions by outcome, time to the first event, feedback by rating and outcome."""

    def __init__(self) -> None:
        super().__init__()
        self.questions = self.make(
            Counter,
            "lakeserve_chat_questions",
            "Questions asked, by outcome (answered, not_found, error).",
            ["outcome"],
        )
        self.first_event = self.make(
            Histogram,
            "lakeserve_chat_first_event_seconds",
            "Time from question to the API's first event (sources known).",
            buckets=_FIRST_EVENT_BUCKETS,
        ).labels()
        self.feedback = self.make(
            Counter,
            "lakeserve_chat_feedback",
            "Feedback sent, by rating and outcome (stored, error).",
            ["rating", "outcome"],
        )

    def serve(self, host: str, port: int) -> None:
        """Expose the metrics over HTTP (GET /metrics) in a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)


# One per process: the launcher serves it, every session of the page counts into it.
METRICS = ChatMetrics()
