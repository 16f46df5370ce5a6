"""OpenAI-compatible chat over the documents: /v1/models and /v1/chat/completions (SSE too).

Errors here, including the error event of a stream that fails midway, use OpenAI's shape.
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from kernel.errors import Overloaded
from lakeserve.api.deps import Authorized, BudgetDep, HostDep, RagDep, json_body
from lakeserve.api.errors import INTERNAL, OPENAI_ERROR_RESPONSES, classify, error_body
from lakeserve.api.observe import rag_call
from lakeserve.api.openapi import raw_body
from lakeserve.api.requestlog import request_id
from lakeserve.api.routes.rag import recorder
from rag.schemas import (
    MAX_QUESTION_CHARS,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ModelList,
)

log = structlog.get_logger(__name__)
router = APIRouter(tags=["openai"], dependencies=[Authorized], responses=OPENAI_ERROR_RESPONSES)
DONE = b"data: [DONE]\n\n"
CHAT_BODY = raw_body(
    ChatCompletionRequest,
    {"model": "lakeserve-rag", "messages": [{"role": "user", "content": "How do I sort a dict?"}]},
    "An OpenAI chat completion request.",
)
Chat = Annotated[ChatCompletionRequest, Depends(json_body(ChatCompletionRequest))]


def _sse(event: BaseModel | dict[str, Any]) -> bytes:
    body = event.model_dump(mode="json") if isinstance(event, BaseModel) else event
    # ASCII-escaped on purpose: SSE clients split lines like str.splitlines(), which also
    # breaks on U+2028/U+2029/U+0085 that raw UTF-8 would let through inside a token.
    return f"data: {json.dumps(body, separators=(',', ':'))}\n\n".encode()


@router.get("/v1/models", response_model=ModelList)
async def list_chat_models(rag: RagDep) -> ModelList:
    """List the chat models (OpenAI-compatible)."""
    return await rag.models()


@router.post(
    "/v1/chat/completions",
    response_model=ChatCompletion,
    responses={200: {"content": {"text/event-stream": {}}}},
    openapi_extra=CHAT_BODY,
)
async def chat_completions(
    request: Chat, rag: RagDep, host: HostDep, budget: BudgetDep, http: Request
) -> Any:
    """OpenAI-compatible chat completion over the documents; `stream: true` gives SSE."""
    question = request.messages[-1].text()[:MAX_QUESTION_CHARS] if request.messages else None
    ident = request_id(http)
    if not request.stream:
        done = recorder(http, "chat", question)
        return await rag_call(host.metrics, "chat", rag.chat(request, ident), budget, done)
    done = recorder(http, "chat_stream", question)
    started = time.perf_counter()
    # A stream holds its slot of the budget until its last event.
    try:
        budget.acquire()
    except Overloaded as exc:
        host.metrics.rag_requests.labels("chat_stream", "503").inc()
        if done is not None:
            done(503, classify(exc).kind.type, time.perf_counter() - started, None)
        raise
    release = _once(budget.release)
    events = rag.chat_stream(request, ident)

    def failed(status: int, error: str | None, elapsed: float, _: Any) -> None:
        if done is not None and status != 200:  # a stream that started is logged at its end
            done(status, error, elapsed, None)

    try:
        # Retrieval happens before the first event: its errors become proper HTTP statuses.
        first = await rag_call(host.metrics, "chat_stream", anext(events), on_done=failed)
    except BaseException:
        release()
        raise

    async def body() -> AsyncIterator[bytes]:
        summary = StreamSummary(first)
        try:
            yield _sse(first)
            async for event in events:
                summary.add(event)
                yield _sse(event)
        except Exception as exc:
            # The status line is sent: the error travels as an event, in the HTTP error's shape.
            problem = classify(exc)
            summary.status, summary.error = problem.kind.status, problem.kind.type
            if problem.kind == INTERNAL:
                log.exception("stream failed", path="/v1/chat/completions")
            yield _sse(error_body(problem, openai=True))
        finally:
            release()
            if done is not None:
                done(summary.status, summary.error, time.perf_counter() - started, summary)
        yield DONE

    stream = body()
    # A client gone before the first byte: the server drops the stream without starting it,
    # so its `finally` never runs; the slot is returned when the generator is collected.
    weakref.finalize(stream, release)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class StreamSummary:
    """What a streamed answer amounted to, for the request log (read like a QueryResponse)."""

    def __init__(self, first: ChatCompletionChunk) -> None:
        self.citations = first.citations or []
        self.status: int = 200
        self.error: str | None = None
        self.mode: str | None = None
        self._parts: list[str] = []
        self._trace: dict[str, Any] = {"found": first.found}

    def add(self, event: ChatCompletionChunk) -> None:
        if event.choices and event.choices[0].delta.content:
            self._parts.append(event.choices[0].delta.content)
        if event.mode is not None:
            self.mode = event.mode
        if event._trace:
            self._trace.update(event._trace)

    @property
    def answer(self) -> str:
        return "".join(self._parts)


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """Return `action` made idempotent: only the first call runs it."""
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return run
