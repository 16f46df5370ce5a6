"""The RAG API as one typed protocol, and its client across a Ray Serve handle.

The platform's ingress calls `RagApi`; `RagService` implements it in process and the
`RagServer` deployment hosts that service, so the same pydantic models cross the handle in
both directions (Ray pickles them) and are validated once, at the HTTP edge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from opentelemetry import trace

from kernel.errors import NotReady, Overloaded, RequestError
from kernel.tracing import span, start_span
from rag.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ModelList,
    QueryRequest,
    QueryResponse,
    RagHealth,
)


class RagApi(Protocol):
    """What the HTTP routes need from RAG; errors are `kernel.errors.RequestError`s."""

    async def health(self) -> RagHealth:
        """Return whether questions can be answered, and what is served."""
        ...

    async def models(self) -> ModelList:
        """Return the OpenAI model list."""
        ...

    async def query(self, request: QueryRequest, request_id: str | None = None) -> QueryResponse:
        """Answer a question with citations; `request_id` (the HTTP request's) goes into the
        answer's logs and traces."""
        ...

    async def chat(
        self, request: ChatCompletionRequest, request_id: str | None = None
    ) -> ChatCompletion:
        """Answer a chat completion in one piece."""
        ...

    def chat_stream(
        self, request: ChatCompletionRequest, request_id: str | None = None
    ) -> AsyncIterator[ChatCompletionChunk]:
        """Yield the completion's chunks: citations first, then tokens, then the finish."""
        ...


def _unwrap(exc: BaseException) -> BaseException:
    """Return the domain error a replica raised (Ray wraps it), or the exception itself.

    A full queue in front of the RagServer replicas (max_queued_requests) is Overloaded: 503
    with Retry-After, at once. A replica that died or stopped while answering (killed, or cut
    off by its drain timeout) is NotReady: 503, the client may ask again.
    """
    from ray.exceptions import ActorDiedError, ActorUnavailableError
    from ray.serve.exceptions import BackPressureError

    if isinstance(exc, BackPressureError):
        return Overloaded(f"RAG is at capacity: {exc}"[:300])
    if isinstance(exc, ActorDiedError | ActorUnavailableError):
        return NotReady(f"the RAG replica answering stopped ({type(exc).__name__}); ask again")
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, RequestError) else exc


class RagHandle:
    """`RagApi` over the Serve handle of the RagServer deployment."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def _call(self, method: str, *args: Any, request_id: str | None = None) -> Any:
        # Serve's own span of the handle call (when it traces) nests under this one.
        with span(f"rag.call {method}", trace.SpanKind.CLIENT, request_id=request_id):
            try:
                return await getattr(self.handle, method).remote(*args)
            except Exception as exc:
                raise _unwrap(exc) from exc

    async def health(self) -> RagHealth:
        result: RagHealth = await self._call("health")
        return result

    async def models(self) -> ModelList:
        result: ModelList = await self._call("models")
        return result

    async def query(self, request: QueryRequest, request_id: str | None = None) -> QueryResponse:
        result: QueryResponse = await self._call(
            "query", request, request_id, request_id=request_id
        )
        return result

    async def chat(
        self, request: ChatCompletionRequest, request_id: str | None = None
    ) -> ChatCompletion:
        result: ChatCompletion = await self._call(
            "chat", request, request_id, request_id=request_id
        )
        return result

    async def chat_stream(
        self, request: ChatCompletionRequest, request_id: str | None = None
    ) -> AsyncIterator[ChatCompletionChunk]:
        # Started in the current context (Serve's request span), never made current: this
        # generator's yields resume in the response's task. It covers the whole stream.
        call = start_span("rag.call chat_stream", kind=trace.SpanKind.CLIENT, request_id=request_id)
        try:
            with trace.use_span(call):
                stream = self.handle.options(stream=True).chat_stream.remote(request, request_id)
            async for chunk in stream:
                yield chunk
        except Exception as exc:
            call.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
            raise _unwrap(exc) from exc
        finally:
            call.end()
