"""Users' ratings attached to the MLflow traces of the answers they rate, off the request path.

The ingress commits each rating to bronze.feedback, then hands it to `FeedbackTraces.submit`,
which never waits: one worker thread of its own attaches ratings one after another from a
bounded queue, and a full queue drops (counted in `outcomes`, logged). Nothing here takes a
thread of the event loop's default executor, which the ingress shares with the feedback
commit and the model host's alias following.

What one attach may cost is bounded: only ids this platform issues are looked up (`ANSWER_ID`),
the wait for an answer's trace to be exported is short, and after any MLflow failure the
worker stops calling MLflow (a circuit breaker) until RETRY_AFTER_S passed and /health answers
within HEALTH_TIMEOUT_S. MLflow's own HTTP timeout and retries (MLFLOW_HTTP_REQUEST_TIMEOUT,
120 s; MLFLOW_HTTP_REQUEST_MAX_RETRIES, 7) are process-wide environment variables only, which
the ingress's model loading reads too: they are left alone; a server that hangs holds this
one worker (the queue fills and drops) and nothing else.
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
import time
from collections import Counter
from typing import Any

import httpx
import structlog

from kernel.settings import TrackingSettings
from rag.schemas import FeedbackRequest
from rag.settings import RagSettings
from rag.tracing import ANSWER_ID_TAG, AnswerTracer

log = structlog.get_logger(__name__)

FEEDBACK_NAME = "user_rating"
# The answer ids RagService issues (rag/service.py): rag-<uuid4 hex> and chatcmpl-<uuid4 hex>.
ANSWER_ID = re.compile(r"(rag|chatcmpl)-[0-9a-f]{32}")
QUEUE_SIZE = 256
WAIT_S = 5.0  # for the answer's trace, exported asynchronously by the RagServer replica
RETRY_AFTER_S = 30.0
HEALTH_TIMEOUT_S = 3.0
WARN_EVERY_S = 10.0
Job = tuple[FeedbackRequest, str]


class FeedbackTraces:
    """Attaches users' ratings to the MLflow traces of the answers they rate."""

    def __init__(
        self,
        settings: RagSettings,
        tracking: TrackingSettings | None = None,
        wait_s: float = WAIT_S,
        queue_size: int = QUEUE_SIZE,
        retry_after_s: float = RETRY_AFTER_S,
    ) -> None:
        self.tracer = AnswerTracer(settings, tracking)
        self.wait_s = wait_s
        self.retry_after_s = retry_after_s
        self.outcomes: Counter[str] = Counter()  # attached, not_found, failed, dropped, ...
        self._jobs: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._broken_until: float | None = None  # the breaker: no MLflow call before this
        self._warned_at = -WARN_EVERY_S

    def submit(self, request: FeedbackRequest, event_id: str) -> bool:
        """Queue the attach of one rating without waiting; False when it is dropped."""
        if not ANSWER_ID.fullmatch(request.answer_id):
            self._count("unknown_id")  # not an answer of ours: there is no trace to find
            return False
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._run, name="feedback-traces")
                self._worker.daemon = True
                self._worker.start()
        try:
            self._jobs.put_nowait((request, event_id))
        except queue.Full:
            self._count("dropped")
            now = time.monotonic()
            if now - self._warned_at >= WARN_EVERY_S:
                self._warned_at = now
                log.warning(
                    "feedback not attached to MLflow: queue full",
                    dropped=self.outcomes["dropped"],
                )
            return False
        return True

    def join(self) -> None:
        """Wait until every queued rating was handled (tests)."""
        self._jobs.join()

    def stop(self) -> None:
        """Let the worker end once the queue is drained (what is queued is still attached)."""
        with self._lock:
            if self._worker is None:
                return
        with contextlib.suppress(queue.Full):  # full: a daemon thread, it ends with the process
            self._jobs.put_nowait(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                self.attach(*job)
            finally:
                self._jobs.task_done()
        self._jobs.task_done()

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.outcomes[outcome] += 1

    def available(self) -> bool:
        """Whether MLflow may be called now: connected, and not broken or healthy again."""
        if self._broken_until is not None:
            if time.monotonic() < self._broken_until:
                return False
            if not self._healthy():
                self._broken_until = time.monotonic() + self.retry_after_s
                return False
            self._broken_until = None
        if self.tracer.connect():
            return True
        self._broken_until = time.monotonic() + self.retry_after_s
        return False

    def _healthy(self) -> bool:
        tracking = self.tracer.tracking
        if not tracking.is_server:
            return True
        try:
            url = f"{tracking.uri.rstrip('/')}/health"
            return httpx.get(url, timeout=HEALTH_TIMEOUT_S).status_code == 200
        except httpx.HTTPError:
            return False

    def find(self, answer_id: str) -> str | None:
        """Return the MLflow trace id of an answer, waiting a little for its async export."""
        import mlflow

        client = mlflow.MlflowClient(self.tracer.tracking.uri)
        query = f"tag.`{ANSWER_ID_TAG}` = '{answer_id}'"  # a checked id: no quotes
        deadline = time.monotonic() + self.wait_s
        pause = 0.25
        while True:
            found = client.search_traces(
                locations=[str(self.tracer.experiment_id)],
                filter_string=query,
                max_results=1,
                include_spans=False,
            )
            if found:
                return str(found[0].info.trace_id)
            if time.monotonic() + pause > deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 2.0)

    def attach(self, request: FeedbackRequest, event_id: str) -> str | None:
        """Log the rating as HUMAN feedback on the answer's trace; return the trace id.

        Never raises: the Delta commit of the feedback is the record; this is its echo.
        """
        if not ANSWER_ID.fullmatch(request.answer_id):
            self._count("unknown_id")
            return None
        if not self.available():
            self._count("unavailable")
            return None
        try:
            trace_id = self.find(request.answer_id)
            if trace_id is None:
                self._count("not_found")
                log.warning("no MLflow trace for the rated answer", answer_id=request.answer_id)
                return None
            self._log(trace_id, request, event_id)
        except Exception as exc:
            self._broken_until = time.monotonic() + self.retry_after_s
            self._count("failed")
            log.warning(
                "feedback not attached to its MLflow trace",
                answer_id=request.answer_id,
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
            return None
        self._count("attached")
        return trace_id

    def _log(self, trace_id: str, request: FeedbackRequest, event_id: str) -> Any:
        import mlflow
        from mlflow.entities import AssessmentSource, AssessmentSourceType

        return mlflow.log_feedback(
            trace_id=trace_id,
            name=FEEDBACK_NAME,
            value=request.rating == "up",
            rationale=request.comment,
            source=AssessmentSource(
                source_type=AssessmentSourceType.HUMAN, source_id=request.client
            ),
            metadata={"event_id": event_id, "rating": request.rating},
        )
