"""Count and time the RAG calls of the routes (inference counts its own, in `inference.run`)."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import TypeVar

from lakeserve.api.errors import classify
from serving.metrics import ServingMetrics

T = TypeVar("T")


async def rag_call(metrics: ServingMetrics, endpoint: str, work: Awaitable[T]) -> T:
    """Await `work`, counting its outcome by HTTP status and timing it."""
    started = time.perf_counter()
    try:
        result = await work
    except Exception as exc:
        metrics.rag_requests.labels(endpoint, str(classify(exc).kind.status)).inc()
        raise
    finally:
        metrics.rag_latency.labels(endpoint).observe(time.perf_counter() - started)
    metrics.rag_requests.labels(endpoint, "200").inc()
    return result
