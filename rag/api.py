"""The RAG API as one typed protocol, and its client across a Ray Serve handle.

The platform's ingress calls `RagApi`; `RagService` implements it in process and the
`RagServer` deployment hosts that service, so the same pydantic models cross the handle in
both directions (Ray pickles them) and are validated once, at the HTTP edge.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from kernel.errors import NotReady, Overloaded, RequestError
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

    async def query(self, request: QueryRequest) -> QueryResponse:
        """Answer a question with citations."""
        ...

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        """Answer a chat completion in one piece."""
        ...

    def chat_stream(self, request: ChatCompletionRequest) -> AsyncIterator[ChatCompletionChunk]:
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

    async def _call(self, method: str, *args: Any) -> Any:
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

    async def query(self, request: QueryRequest) -> QueryResponse:
        result: QueryResponse = await self._call("query", request)
        return result

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion:
        result: ChatCompletion = await self._call("chat", request)
        return result

    async def chat_stream(
        self, request: ChatCompletionRequest
    ) -> AsyncIterator[ChatCompletionChunk]:
        stream = self.handle.options(stream=True).chat_stream.remote(request)
        try:
            async for chunk in stream:
                yield chunk
        except Exception as exc:
            raise _unwrap(exc) from exc
