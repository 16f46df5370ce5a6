"""RagHandle: what the ingress makes of the errors a RagServer call can end with."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError
from ray.serve.exceptions import BackPressureError

from kernel.errors import NotReady, Overloaded, Upstream
from rag.api import RagHandle
from rag.schemas import ChatCompletionRequest, QueryRequest


class Raising:
    """A handle whose every call (and stream) ends with `error`."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def __getattr__(self, name: str) -> Any:
        return self

    def options(self, **_: Any) -> Raising:
        return self

    def remote(self, *_: Any) -> Any:
        error = self.error

        class Call:
            def __await__(self) -> Any:
                raise error
                yield  # pragma: no cover

            def __aiter__(self) -> AsyncIterator[Any]:
                return self

            async def __anext__(self) -> Any:
                raise error

        return Call()


class WrappedByRay(Exception):
    """What Ray raises for a replica's own exception: the original is `cause`."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


@pytest.mark.parametrize(
    ("error", "expected", "message"),
    [
        (BackPressureError(num_queued_requests=16, max_queued_requests=16), Overloaded, "capacity"),
        (ActorDiedError(), NotReady, "stopped \\(ActorDiedError\\); ask again"),
        (ActorUnavailableError("gone", None), NotReady, "ActorUnavailableError"),
        (WrappedByRay(Upstream("LLM failed: timeout")), Upstream, "LLM failed"),
    ],
)
def test_replica_errors_become_client_errors(
    error: BaseException, expected: type[Exception], message: str
) -> None:
    rag = RagHandle(Raising(error))
    chat = ChatCompletionRequest(model="lakeserve-rag", messages=[{"role": "user", "content": "q"}])

    async def stream() -> None:
        async for _ in rag.chat_stream(chat):
            pass

    with pytest.raises(expected, match=message):
        asyncio.run(rag.query(QueryRequest(question="q")))
    with pytest.raises(expected, match=message):
        asyncio.run(stream())
