"""OpenAI-compatible chat over the documents: /v1/models and /v1/chat/completions (SSE too).

Errors here, including the error event of a stream that fails midway, use OpenAI's shape.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from kernel.errors import Overloaded
from lakeserve.api.deps import Authorized, BudgetDep, HostDep, RagDep, json_body
from lakeserve.api.errors import INTERNAL, OPENAI_ERROR_RESPONSES, classify, error_body
from lakeserve.api.observe import rag_call
from lakeserve.api.openapi import raw_body
from rag.schemas import ChatCompletion, ChatCompletionRequest, ModelList

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
async def chat_completions(request: Chat, rag: RagDep, host: HostDep, budget: BudgetDep) -> Any:
    """OpenAI-compatible chat completion over the documents; `stream: true` gives SSE."""
    if not request.stream:
        return await rag_call(host.metrics, "chat", rag.chat(request), budget)
    # A stream holds its slot of the budget until its last event.
    try:
        budget.acquire()
    except Overloaded:
        host.metrics.rag_requests.labels("chat_stream", "503").inc()
        raise
    release = _once(budget.release)
    events = rag.chat_stream(request)
    try:
        # Retrieval happens before the first event: its errors become proper HTTP statuses.
        first = await rag_call(host.metrics, "chat_stream", anext(events))
    except BaseException:
        release()
        raise

    async def body() -> AsyncIterator[bytes]:
        try:
            yield _sse(first)
            async for event in events:
                yield _sse(event)
        except Exception as exc:
            # The status line is sent: the error travels as an event, in the HTTP error's shape.
            problem = classify(exc)
            if problem.kind == INTERNAL:
                log.exception("stream failed", path="/v1/chat/completions")
            yield _sse(error_body(problem, openai=True))
        finally:
            release()
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


def _once(action: Callable[[], None]) -> Callable[[], None]:
    """Return `action` made idempotent: only the first call runs it."""
    done = False

    def run() -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return run
