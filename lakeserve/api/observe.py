"""Count and time the RAG calls of the routes (inference counts its own, in `inference.run`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from kernel.errors import Overloaded
from lakeserve.api.errors import classify
from serving.metrics import ServingMetrics

T = TypeVar("T")
# Called once a RAG call ended: (HTTP status, error type or None, seconds, result or None).
Done = Callable[[int, str | None, float, Any], None]


class Budget:
    """How many RAG calls an ingress replica runs at once; past it, 503 at once, no queue.

    RAG answers take seconds and model predictions milliseconds: with its own budget, RAG load
    cannot take the ingress slots that model inference needs.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def acquire(self) -> None:
        """Take a slot, or raise Overloaded (the event loop is single-threaded: no lock)."""
        if self.used >= self.limit:
            raise Overloaded(f"RAG is at capacity ({self.limit} answers in progress here); retry")
        self.used += 1

    def release(self) -> None:
        """Give a slot back."""
        self.used -= 1


async def rag_call(
    metrics: ServingMetrics,
    endpoint: str,
    work: Awaitable[T],
    budget: Budget | None = None,
    on_done: Done | None = None,
) -> T:
    """Await `work` within `budget`, counting its outcome by HTTP status and timing it.

    `on_done` hears how it ended (the request log); it must not raise.
    """
    started = time.perf_counter()
    try:
        if budget is not None:
            try:
                budget.acquire()
            except Overloaded:
                close = getattr(work, "close", None)
                if close is not None:
                    close()  # the coroutine will never run
                raise
            try:
                result = await work
            finally:
                budget.release()
        else:
            result = await work
    except Exception as exc:
        kind = classify(exc).kind
        metrics.rag_requests.labels(endpoint, str(kind.status)).inc()
        if on_done is not None:
            on_done(kind.status, kind.type, time.perf_counter() - started, None)
        raise
    finally:
        metrics.rag_latency.labels(endpoint).observe(time.perf_counter() - started)
    metrics.rag_requests.labels(endpoint, "200").inc()
    if on_done is not None:
        on_done(200, None, time.perf_counter() - started, result)
    return result
