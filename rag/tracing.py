"""Each RAG answer as one MLflow trace (retrieve, fuse, generate), beside its OpenTelemetry spans.

Every stage of an answer is an OpenTelemetry span (under Ray Serve's request span when Serve
traces) and, when the answer is traced in MLflow, a span of the answer's MLflow trace. MLflow
keeps its spans in a tracer provider and context of its own (its default), so neither tree
leaks into the other; here both are started detached and parented explicitly, which also holds
across the yields of a streamed answer.

Tracing never fails or slows an answer: MLflow is only used once its /health answered (checked
off the request path), spans live in memory until the answer ends, and MLflow exports them from
its own worker threads (async trace logging). Anything MLflow raises is logged and dropped.

MLflow's traces go to the tracking store whatever OTEL_EXPORTER_OTLP_* says: MLflow 3 would
otherwise send them only to that OTLP endpoint (Serve's spans use it, serving/tracing.py), so
`connect()` sets MLflow's trace destination to the experiment explicitly. The answer's request
id is its tag lakeserve.request_id (`request_filter`), and also MLflow's client_request_id when
it fits MLflow's column (50 characters).
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import structlog
from opentelemetry import trace as otel

from kernel.settings import TrackingSettings
from kernel.tracing import set_attributes, start_span, trace_id
from rag.settings import RagSettings

log = structlog.get_logger(__name__)

ANSWER_ID_TAG = "lakeserve.answer_id"
OTEL_TRACE_TAG = "lakeserve.otel_trace_id"
ENDPOINT_TAG = "lakeserve.endpoint"
REQUEST_ID_TAG = "lakeserve.request_id"
MAX_CLIENT_REQUEST_ID = 50  # MLflow's trace_info.client_request_id is String(50)
RECONNECT_S = 30.0
PREVIEW_CHARS = 1000
_CURRENT: ContextVar[AnswerTrace | None] = ContextVar("lakeserve_answer_trace", default=None)


class Stage:
    """One stage of an answer: its OpenTelemetry span and, when traced, its MLflow span."""

    def __init__(self, span: otel.Span, mlflow_span: Any | None) -> None:
        self.span = span
        self.mlflow_span = mlflow_span
        self.outputs: Any = None

    def output(self, value: Any, **attributes: Any) -> None:
        """Record what the stage produced (MLflow outputs) and scalar attributes (both)."""
        self.outputs = value
        self.attributes(**attributes)

    def attributes(self, **attributes: Any) -> None:
        """Set attributes on both spans (None values are left out)."""
        set_attributes(self.span, **attributes)
        if self.mlflow_span is not None:
            values = {k: v for k, v in attributes.items() if v is not None}
            _quietly(self.mlflow_span.set_attributes, values)


@dataclass
class AnswerTrace:
    """The spans of one answer: the OpenTelemetry root and, when traced, the MLflow root."""

    answer_id: str
    request_id: str | None
    span: otel.Span
    mlflow_span: Any | None = None
    tags: dict[str, str] = field(default_factory=dict)
    result: dict[str, Any] | None = None  # what `finish()` recorded

    @property
    def mlflow_trace_id(self) -> str | None:
        """Return the MLflow trace id (tr-...), when the answer is traced in MLflow."""
        return getattr(self.mlflow_span, "trace_id", None) if self.mlflow_span else None

    @contextlib.contextmanager
    def stage(
        self, name: str, span_type: str, inputs: Any = None, **attributes: Any
    ) -> Iterator[Stage]:
        """Run one stage in a child span of this answer (both trees)."""
        span = start_span(f"rag.{name}", self.span, **attributes)
        child = None
        if self.mlflow_span is not None:
            import mlflow  # only once traced: MLflow is imported by then, off the loop

            child = _quietly(
                mlflow.start_span_no_context,
                name,
                span_type=span_type,
                parent_span=self.mlflow_span,
                inputs=inputs,
                attributes={k: v for k, v in attributes.items() if v is not None},
            )
        stage = Stage(span, child)
        try:
            yield stage
        except BaseException as exc:
            span.set_status(otel.Status(otel.StatusCode.ERROR, type(exc).__name__))
            if child is not None:
                _quietly(child.end, outputs=stage.outputs, status="ERROR")
            raise
        else:
            if child is not None:
                _quietly(child.end, outputs=stage.outputs)
        finally:
            span.end()

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """Make this the answer that `stage()` adds to (no yields inside: a context var)."""
        token = _CURRENT.set(self)
        try:
            yield
        finally:
            _CURRENT.reset(token)


@contextlib.contextmanager
def stage(name: str, span_type: str, inputs: Any = None, **attributes: Any) -> Iterator[Stage]:
    """Run a stage of the current answer; outside an answer, an OpenTelemetry span only."""
    answer = _CURRENT.get()
    if answer is not None:
        with answer.stage(name, span_type, inputs, **attributes) as current:
            yield current
        return
    span = start_span(f"rag.{name}", **attributes)
    try:
        yield Stage(span, None)
    finally:
        span.end()


class AnswerTracer:
    """Opens the trace of each answer; MLflow traces go to one experiment once it is reachable.

    `connect()` (from a background thread) checks MLflow's /health, then resolves the
    experiment; until it succeeds answers carry OpenTelemetry spans only.
    """

    def __init__(self, settings: RagSettings, tracking: TrackingSettings | None = None) -> None:
        self.settings = settings
        self.tracking = tracking or TrackingSettings()
        self.experiment_id: str | None = None
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._warned = False

    def connect(self) -> bool:
        """Point MLflow at the tracking store and resolve the experiment; True on success.

        Safe from several threads at once: one connects, the others wait for its outcome.
        """
        if not self.settings.rag_trace:
            return False
        with self._lock:
            return self.experiment_id is not None or self._connect()

    def _connect(self) -> bool:
        from kernel.tracking import TrackingStore  # mlflow: imported only where it is used

        store = TrackingStore(self.tracking)
        try:
            store.connect()
            experiment_id = store.experiment(self.settings.rag_trace_experiment)
            _export_to(experiment_id)
        except Exception as exc:  # TrackingUnavailable or any other: keep answering untraced
            if not self._warned:
                log.warning("rag answers are not traced in MLflow yet", error=str(exc)[:300])
                self._warned = True
            return False
        self.experiment_id = experiment_id
        log.info(
            "rag answers traced in MLflow",
            experiment=self.settings.rag_trace_experiment,
            experiment_id=self.experiment_id,
        )
        return True

    def start(self) -> None:
        """Connect from a background thread, retrying until MLflow answers or `stop()`."""
        if not self.settings.rag_trace:
            return

        def run() -> None:
            while not self.connect() and not self._stopped.wait(RECONNECT_S):
                pass

        threading.Thread(target=run, name="rag-trace-connect", daemon=True).start()

    def stop(self) -> None:
        """Stop retrying to connect."""
        self._stopped.set()

    def _sampled(self) -> bool:
        rate = self.settings.rag_trace_sample
        return self.experiment_id is not None and rate > 0 and random.random() < rate

    @contextlib.contextmanager
    def answer(
        self, answer_id: str, request_id: str | None, endpoint: str, question: str
    ) -> Iterator[AnswerTrace]:
        """Trace one answer; the caller records the answer with `finish()`."""
        span = start_span(
            "rag.answer", answer_id=answer_id, request_id=request_id, endpoint=endpoint
        )
        tags = {ANSWER_ID_TAG: answer_id, ENDPOINT_TAG: endpoint}
        if request_id:
            tags[REQUEST_ID_TAG] = request_id
        otel_id = trace_id(span)
        if otel_id is not None and span.is_recording():
            tags[OTEL_TRACE_TAG] = otel_id
        current = AnswerTrace(answer_id, request_id, span, tags=tags)
        if self._sampled():
            current.mlflow_span = self._open(question, endpoint, dict(tags))
        try:
            yield current
        except BaseException as exc:
            span.set_status(otel.Status(otel.StatusCode.ERROR, type(exc).__name__))
            self._close(current, None, error=exc)
            raise
        else:
            self._close(current, current.result)
        finally:
            span.end()

    def _open(self, question: str, endpoint: str, tags: dict[str, str]) -> Any | None:
        import mlflow
        from mlflow.entities import SpanType

        return _quietly(
            mlflow.start_span_no_context,
            "rag_answer",
            span_type=SpanType.CHAIN,
            inputs={"question": question},
            attributes={"endpoint": endpoint},
            tags=tags,
            experiment_id=self.experiment_id,
        )

    def _close(self, current: AnswerTrace, answer: Any, error: BaseException | None = None) -> None:
        root = current.mlflow_span
        if root is None:
            return
        try:
            _quietly(_tag, root, current.tags)
            text = answer.get("answer", "") if isinstance(answer, dict) else ""
            client_id = current.request_id
            if client_id is not None and len(client_id) > MAX_CLIENT_REQUEST_ID:
                client_id = None  # found by its tag only (see request_filter)
            _quietly(_identify, root, client_id, text[:PREVIEW_CHARS] or None)
        finally:
            # Whatever failed above, the trace ends: an unended trace is never exported.
            if error is None:
                _quietly(root.end, outputs=answer)
            else:
                outputs = {"error": f"{type(error).__name__}: {error}"[:300]}
                _quietly(root.end, outputs=outputs, status="ERROR")


def _export_to(experiment_id: str) -> None:
    """Send MLflow's traces to the experiment in the tracking store, never to OTLP alone."""
    import mlflow
    from mlflow.entities.trace_location import MlflowExperimentLocation

    mlflow.tracing.set_destination(MlflowExperimentLocation(experiment_id=experiment_id))


def _tag(root: Any, tags: dict[str, str]) -> None:
    """Set the answer's tags (those of its outcome are known only now) on its live trace."""
    import mlflow

    for key, value in tags.items():
        mlflow.set_trace_tag(root.trace_id, key, value)  # in memory while the trace is live


def _identify(root: Any, client_request_id: str | None, preview: str | None) -> None:
    """Set the trace's client request id and response preview (MLflow's own fields).

    Only `update_current_trace` sets them, and it acts on the active span: the root is
    detached, so it is made active for this synchronous block by MLflow's private helper. If
    that fails, the trace loses these two fields only: it is found by its tags.
    """
    import mlflow
    from mlflow.tracing.provider import with_active_span

    if client_request_id is None and preview is None:
        return
    with with_active_span(root):
        mlflow.update_current_trace(client_request_id=client_request_id, response_preview=preview)


def request_filter(request_id: str) -> str:
    """Return the MLflow search filter of the traces of one request id (its tag)."""
    quoted = request_id.replace("\\", "").replace("'", "")
    return f"tag.`{REQUEST_ID_TAG}` = '{quoted}'"


def finish(current: AnswerTrace, answer: dict[str, Any], **tags: Any) -> None:
    """Record the answer on its trace (the MLflow root's outputs) and tags of its outcome."""
    current.result = answer
    current.tags.update({f"lakeserve.{k}": str(v) for k, v in tags.items() if v is not None})
    set_attributes(current.span, **tags)


def _quietly(action: Any, *args: Any, **kwargs: Any) -> Any:
    """Call an MLflow tracing function; log and swallow what it raises."""
    try:
        return action(*args, **kwargs)
    except Exception as exc:
        log.warning("mlflow tracing failed", error=f"{type(exc).__name__}: {exc}"[:300])
        return None
