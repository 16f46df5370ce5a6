"""The request log: what each ingress replica served, appended to bronze off the request path.

Every inference (one row per predicted row, the model's inputs as typed columns) and every RAG
answer is offered to a `DeltaSink` after the response is built. `offer` never waits: a slow or
unavailable lakehouse costs queued rows, then dropped rows counted in
`lakeserve_request_log_events{outcome="dropped"}`, never a slower or failed request.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import structlog
from starlette.middleware import Middleware
from starlette.requests import Request
from structlog.contextvars import bound_contextvars

from kernel.domain import Outside
from lakehouse.requests import (
    PARTITION_BY,
    PREDICTION_FIELDS,
    PREDICTIONS,
    RAG_REQUESTS,
    RAG_SCHEMA,
    prediction_schema,
)
from lakehouse.sink import DeltaSink, SinkStats
from lakehouse.tables import Lakehouse
from lakeserve.api.observe import Done
from serving.metrics import ServingMetrics
from serving.options import RequestLogOptions
from serving.schema import InputSchema

log = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "x-request-id"
MAX_ID_CHARS = 200
METRICS_EVERY_S = 2.0
_ARROW = {
    "double": pa.float64(),
    "float": pa.float32(),
    "long": pa.int64(),
    "integer": pa.int32(),
    "boolean": pa.bool_(),
    "string": pa.string(),
}
_CITED = re.compile(r"\[(\d{1,3})\]")
_UNPRINTABLE = re.compile(r"[^\x21-\x7e]")
_OUTCOMES = ("written", "dropped", "rejected", "lost")


def request_id(request: Any) -> str:
    """The request's id: the client's X-Request-Id cleaned (`clean_id`), or a new one.

    Decided once per request (kept in its scope), so every log line, span and trace of the
    request, and the X-Request-Id of its response (`RequestIdMiddleware`), carry the same id.
    """
    state = request.scope.setdefault("state", {})
    ident: str | None = state.get("request_id")
    if ident is None:
        ident = state["request_id"] = clean_id(request.headers.get(REQUEST_ID_HEADER)) or _new_id()
    return ident


def clean_id(value: str | bytes | None) -> str | None:
    """Return a client's request id as printable ASCII of at most MAX_ID_CHARS; None if empty.

    Everything else is dropped: Starlette decodes headers as latin-1 and Ray as UTF-8, so only
    ASCII reads the same on both sides, and a short id fits MLflow's and the logs' columns.
    """
    text = value.decode("latin-1") if isinstance(value, bytes) else value or ""
    return _UNPRINTABLE.sub("", text)[:MAX_ID_CHARS] or None


def _new_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Give every request a clean X-Request-Id (`clean_id` of the client's, or a new one).

    The request's header is replaced by the clean id, so the app (and Ray Serve's own request
    metadata and logs) only ever see that one; `respond` also returns it on the response.
    Outside Serve the app adds this with `respond`; inside, `ray_middlewares` puts it in front
    of Ray's own middleware, which returns the (clean) id itself.
    """

    def __init__(self, app: Any, respond: bool = True) -> None:
        self.app = app
        self.respond = respond

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        key = REQUEST_ID_HEADER.encode()
        headers = scope["headers"]
        given = next((v for k, v in headers if k == key), None)
        ident = (clean_id(given) or _new_id()).encode()
        if ident != given:
            scope["headers"] = [*(h for h in headers if h[0] != key), (key, ident)]
        if not self.respond:
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-request-id", ident)]
            await send(message)

        await self.app(scope, receive, send_with_id)


def ray_middlewares() -> list[Middleware]:
    """The HTTP middlewares of Ray Serve's ingress (RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH).

    Ray wraps its own request-id middleware in these, so the client's X-Request-Id is cleaned
    before Ray reads it: Ray's logs, the response header and ours agree.
    """
    return [Middleware(RequestIdMiddleware, respond=False)]


class LogContextMiddleware:
    """Bind the request's id into structlog's context: every log line of the request has it.

    Inside the app (after `RequestIdMiddleware`, or Serve's proxy, gave the request its id);
    the streamed body of a response runs inside this call, so its lines have it too.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with bound_contextvars(request_id=request_id(Request(scope))):
            await self.app(scope, receive, send)


def features_type(schema: InputSchema) -> pa.StructType:
    """The `features` struct of a model's rows: its signature's columns, typed."""
    return pa.struct([pa.field(c.name, _ARROW.get(c.type, pa.string())) for c in schema.columns])


class RequestLog:
    """The sinks of one ingress replica: one per model signature, one for RAG."""

    def __init__(
        self,
        lake: Lakehouse,
        options: RequestLogOptions,
        metrics: ServingMetrics,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self.lake, self.options, self.metrics = lake, options, metrics
        self._sample = sample
        # Keyed by the model's metric label and signature: bounded by the hosted models.
        self._sinks: dict[tuple[str, tuple[tuple[str, str], ...] | None], DeltaSink] = {}
        self._rag: DeltaSink | None = None
        self._reported: dict[str, dict[str, int]] = {}

    def _sink(self, table: Any, schema: pa.Schema) -> DeltaSink:
        return DeltaSink(
            self.lake,
            table,
            schema,
            source="lakeserve serve",
            max_queue=self.options.max_queue,
            batch_rows=self.options.batch_rows,
            flush_s=self.options.flush_s,
            partition_by=PARTITION_BY,
            merge_schema=True,  # models with other inputs share the table
        )

    def sampled(self, fraction: float) -> bool:
        """Decide whether one request is logged."""
        return self.options.enabled and fraction > 0 and self._sample() < fraction

    def prediction(
        self,
        *,
        request_id: str,
        label: str,
        model: str,
        version: str | None,
        endpoint: str,
        status: int,
        error: str | None,
        latency_s: float,
        schema: InputSchema | None = None,
        rows: dict[str, np.ndarray] | None = None,
        predictions: np.ndarray | None = None,
        outside: Outside | None = None,
    ) -> None:
        """Offer one inference request: a row per predicted row (one row when none was read)."""
        key = (label, tuple((c.name, c.type) for c in schema.columns) if schema else None)
        sink = self._sinks.get(key)
        if sink is None:
            fields = (
                prediction_schema(features_type(schema)) if schema else pa.schema(PREDICTION_FIELDS)
            )
            sink = self._sinks[key] = self._sink(PREDICTIONS, fields)
        now = datetime.now(UTC)
        base = {
            "request_id": request_id[:MAX_ID_CHARS],
            "received_at": now,
            "date": now.date(),
            "model": model[:MAX_ID_CHARS],
            "version": version,
            "endpoint": endpoint,
            "status": status,
            "error": error,
            "latency_ms": latency_s * 1000.0,
        }
        if schema is None or not rows:
            sink.offer({**base, "row": 0})
            return
        columns = {name: values.tolist() for name, values in rows.items()}
        count = len(next(iter(columns.values())))
        outputs = _outputs(predictions, count)
        flagged = outside.per_row() if outside is not None else None
        for i in range(count):
            row = {**base, "row": i, "features": {n: v[i] for n, v in columns.items()}}
            if outputs is not None:
                row.update(outputs[i])
            if flagged is not None:
                row["out_of_domain"] = flagged[i]
            sink.offer(row)

    def rag(
        self,
        *,
        request_id: str,
        endpoint: str,
        status: int,
        error: str | None,
        latency_s: float,
        question: str | None,
        answer: Any = None,
    ) -> None:
        """Offer one RAG request; `answer` is a QueryResponse-like object (None on errors)."""
        if self._rag is None:
            self._rag = self._sink(RAG_REQUESTS, RAG_SCHEMA)
        now = datetime.now(UTC)
        row: dict[str, Any] = {
            "request_id": request_id[:MAX_ID_CHARS],
            "received_at": now,
            "date": now.date(),
            "endpoint": endpoint,
            "status": status,
            "error": error,
            "latency_ms": latency_s * 1000.0,
            "question": question,
        }
        if answer is not None:
            row.update(_answer_fields(answer))
        self._rag.offer(row)

    def rag_recorder(self, request: Any, endpoint: str, question: str | None) -> Done | None:
        """A `rag_call` callback that logs this request, or None when it is not sampled."""
        if not self.sampled(self.options.rag_sample):
            return None
        ident = request_id(request)

        def done(status: int, error: str | None, elapsed: float, answer: Any) -> None:
            self.rag(
                request_id=ident, endpoint=endpoint, status=status, error=error,
                latency_s=elapsed, question=question, answer=answer,
            )  # fmt: skip

        return done

    def sinks(self) -> dict[str, list[DeltaSink]]:
        """Every sink by table name."""
        tables: dict[str, list[DeltaSink]] = {}
        for sink in [*self._sinks.values(), *([self._rag] if self._rag else [])]:
            tables.setdefault(str(sink.table), []).append(sink)
        return tables

    def report(self) -> None:
        """Move the sinks' counts into the metrics (counters get what changed since last time)."""
        for table, sinks in self.sinks().items():
            totals = {o: sum(getattr(s.stats, o) for s in sinks) for o in _OUTCOMES}
            seen = self._reported.setdefault(table, dict.fromkeys(_OUTCOMES, 0))
            for outcome, total in totals.items():
                if total > seen[outcome]:
                    self.metrics.request_log_events.labels(table, outcome).inc(
                        total - seen[outcome]
                    )
                    seen[outcome] = total
            self.metrics.request_log_queue.labels(table).set(sum(s.pending() for s in sinks))

    async def run(self) -> None:
        """Report into the metrics until cancelled."""
        while True:
            await asyncio.sleep(METRICS_EVERY_S)
            self.report()

    def close(self) -> dict[str, SinkStats]:
        """Write what is queued (within the drain deadline, shared by all sinks) and report."""
        tables = self.sinks()
        for sinks in tables.values():
            for sink in sinks:
                sink.stop_taking()  # every sink drains at once, within one deadline
        deadline = time.monotonic() + self.options.drain_s
        stats: dict[str, SinkStats] = {}
        for table, sinks in tables.items():
            for sink in sinks:
                stats.setdefault(table, SinkStats())
                final = sink.close(max(deadline - time.monotonic(), 0.0))
                stats[table].add(
                    written=final.written, dropped=final.dropped,
                    rejected=final.rejected, lost=final.lost,
                )  # fmt: skip
        self.report()
        if stats:
            log.info("request log closed", **{t: _brief(s) for t, s in stats.items()})
        return stats


def _answer_fields(answer: Any) -> dict[str, Any]:
    """The logged fields of a QueryResponse, a ChatCompletion or a finished stream's summary."""
    # A chat completion carries what OpenAI's shape has no field for in its private `_trace`.
    trace: dict[str, Any] = getattr(answer, "_trace", None) or {}
    choices = getattr(answer, "choices", None)
    text = choices[0].message.content if choices else getattr(answer, "answer", None)
    text = text if isinstance(text, str) else trace.get("answer", "")
    citations = list(getattr(answer, "citations", None) or trace.get("citations") or [])
    cited = {int(n) for n in _CITED.findall(text)}
    timings = getattr(answer, "timings", None) or trace.get("timings") or {}
    found = getattr(answer, "found", None)
    return {
        "query": getattr(answer, "query", None) or trace.get("query"),
        "retrieved_ids": [c.doc_id for c in citations],
        "retrieved_scores": [float(c.score) for c in citations],
        "cited_ids": [c.doc_id for c in citations if c.number in cited],
        "found": trace.get("found") if found is None else found,
        "mode": getattr(answer, "mode", None) or trace.get("mode"),
        "timings_ms": [(str(k), float(v)) for k, v in timings.items()],
        "answer_chars": len(text),
    }


def _brief(stats: SinkStats) -> dict[str, int]:
    return {o: getattr(stats, o) for o in _OUTCOMES}


def _outputs(predictions: np.ndarray | None, count: int) -> list[dict[str, Any]] | None:
    """The prediction columns of each row: one number, or the row's outputs as JSON."""
    if predictions is None or len(predictions) != count:
        return None
    if predictions.ndim == 1 and predictions.dtype.kind in "fiub":
        return [{"prediction": float(v)} for v in predictions.tolist()]
    return [{"prediction_json": json.dumps(v, default=str)} for v in predictions.tolist()]
