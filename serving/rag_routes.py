"""The RAG routes of the platform API: /rag/query, /rag/health and OpenAI-compatible /v1."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, StreamingResponse

from lakehouse.errors import RequestError
from rag.feedback import FeedbackStore
from rag.schemas import (
    ChatCompletion,
    ChatCompletionRequest,
    FeedbackReceipt,
    FeedbackRequest,
    ModelList,
    QueryRequest,
    QueryResponse,
    RagHealth,
    dump,
)
from serving.errors import ERROR_RESPONSES, status_of
from serving.metrics import ServingMetrics

HEALTH_TIMEOUT_S = 3.0


class RagBackend(Protocol):
    """What the routes need from the RAG service: a local object or a Serve deployment."""

    async def health(self) -> dict[str, Any]: ...
    async def models(self) -> dict[str, Any]: ...
    async def query(self, payload: dict[str, Any]) -> dict[str, Any]: ...
    async def chat(self, payload: dict[str, Any]) -> dict[str, Any]: ...
    def chat_stream(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]: ...


def _unwrap(exc: BaseException) -> BaseException:
    """Return the domain error a replica raised (Ray wraps it), or the exception itself."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, RequestError) else exc


class HandleBackend:
    """Calls the RagServer deployment through its Serve handle."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def _call(self, method: str, *args: Any) -> dict[str, Any]:
        try:
            result: dict[str, Any] = await getattr(self.handle, method).remote(*args)
        except Exception as exc:
            raise _unwrap(exc) from exc
        return result

    async def health(self) -> dict[str, Any]:
        return await self._call("health")

    async def models(self) -> dict[str, Any]:
        return await self._call("models")

    async def query(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._call("query", payload)

    async def chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self._call("chat", payload)

    async def chat_stream(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        stream = self.handle.options(stream=True).chat_stream.remote(payload)
        try:
            async for event in stream:
                yield event
        except Exception as exc:
            raise _unwrap(exc) from exc


class ServiceBackend:
    """Calls a RagService in this process (tests, single-process use)."""

    def __init__(self, service: Any) -> None:
        self.service = service

    async def health(self) -> dict[str, Any]:
        return dict(self.service.health())

    async def models(self) -> dict[str, Any]:
        return dict(self.service.models())

    async def query(self, payload: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.service.query(payload))

    async def chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        return dict(await self.service.chat(payload))

    def chat_stream(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        stream: AsyncIterator[dict[str, Any]] = self.service.chat_stream(payload)
        return stream


def _sse(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event, separators=(',', ':'))}\n\n".encode()


def rag_routers(
    backend: RagBackend,
    authorize: Callable[..., None],
    metrics: ServingMetrics,
    feedback: FeedbackStore | None = None,
) -> tuple[APIRouter, APIRouter]:
    """Return the health router (open) and the API router (behind `authorize`).

    POST /rag/feedback exists when a feedback store is given.
    """
    health = APIRouter(tags=["rag"])
    api = APIRouter(dependencies=[Depends(authorize)], responses=ERROR_RESPONSES)

    async def observed(endpoint: str, work: Any) -> Any:
        started = time.perf_counter()
        try:
            result = await work
        except Exception as exc:
            status = status_of(exc)[0] if isinstance(exc, RequestError) else 500
            metrics.rag_requests.labels(endpoint, str(status)).inc()
            raise
        finally:
            metrics.rag_latency.labels(endpoint).observe(time.perf_counter() - started)
        metrics.rag_requests.labels(endpoint, "200").inc()
        return result

    @health.get("/rag/health", response_model=RagHealth, responses={503: {"model": RagHealth}})
    async def rag_health() -> Any:
        """Return 200 when the index is loaded and questions can be answered, 503 before."""
        try:
            state = RagHealth.model_validate(
                await asyncio.wait_for(backend.health(), HEALTH_TIMEOUT_S)
            )
        except TimeoutError:
            # A replica still loading its models, or every replica's slots taken by generations:
            # say so quickly instead of leaving a probe hanging.
            state = RagHealth(
                ready=False,
                collection="",
                chunks=0,
                llm="",
                detail=f"no RAG replica answered within {HEALTH_TIMEOUT_S:.0f}s (starting or busy)",
            )
        return JSONResponse(dump(state), status_code=200 if state.ready else 503)

    @api.post("/rag/query", response_model=QueryResponse, tags=["rag"])
    async def rag_query(request: QueryRequest) -> Any:
        """Answer a question from the documents, with numbered citations and stage timings."""
        return await observed("rag_query", backend.query(dump(request)))

    if feedback is not None:
        store = feedback

        @api.post("/rag/feedback", response_model=FeedbackReceipt, status_code=201, tags=["rag"])
        async def rag_feedback(request: FeedbackRequest) -> Any:
            """Record a rating (and comment) of an answer in bronze.feedback.

            Answers after the Delta commit: a 201 means the feedback is stored.
            """
            receipt = await observed("feedback", asyncio.to_thread(store.record, request))
            metrics.rag_feedback.labels(request.rating).inc()
            return receipt

    @api.get("/v1/models", response_model=ModelList, tags=["openai"])
    async def list_chat_models() -> Any:
        """List the chat models (OpenAI-compatible)."""
        return await backend.models()

    @api.post(
        "/v1/chat/completions",
        response_model=ChatCompletion,
        tags=["openai"],
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def chat_completions(request: ChatCompletionRequest) -> Any:
        """OpenAI-compatible chat completion over the documents; `stream: true` gives SSE."""
        payload = dump(request)
        if not request.stream:
            return await observed("chat", backend.chat(payload))
        events = backend.chat_stream(payload)
        # Retrieval happens before the first event: its errors become proper HTTP statuses.
        first = await observed("chat_stream", anext(events))

        async def body() -> AsyncIterator[bytes]:
            yield _sse(first)
            try:
                async for event in events:
                    yield _sse(event)
            except Exception as exc:
                error = _unwrap(exc)
                status, kind = status_of(error) if isinstance(error, RequestError) else (500, "")
                message = str(error) if status != 500 else "internal error"
                yield _sse({"error": {"message": message, "type": kind or "server_error"}})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return health, api
