"""The app factory: one FastAPI app for the models and, when given, the RAG API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from lakeserve.api.errors import install_error_handlers
from lakeserve.api.observe import Budget
from lakeserve.api.openapi import install_openapi
from lakeserve.api.requestlog import LogContextMiddleware, RequestIdMiddleware, RequestLog
from lakeserve.api.routes import health, metrics, models, openai, predict, v2
from lakeserve.api.routes import rag as rag_routes
from rag.api import RagApi
from rag.feedback import FeedbackStore
from rag.ratings import FeedbackTraces
from rag.schemas import ChatCompletionRequest, FeedbackRequest, QueryRequest
from serving.host import ModelHost
from serving.invocations import InvocationRequest
from serving.v2 import InferRequest

DESCRIPTION = (
    "Registered MLflow models over Open Inference Protocol v2 and MLflow-style scoring; "
    "question answering over lakehouse documents (/rag, OpenAI-compatible /v1). "
    "Errors are JSON {error, type}; on /v1 they use OpenAI's error shape."
)


def create_app(
    host: ModelHost,
    api_keys: list[str] | None = None,
    rag: RagApi | None = None,
    feedback: FeedbackStore | None = None,
    request_log: RequestLog | None = None,
    request_ids: bool = True,
    feedback_traces: FeedbackTraces | None = None,
) -> FastAPI:
    """Build the API around a model host (and the RAG API and feedback store, when given).

    The app starts the host (first load, alias following) in its lifespan and stops it after.
    With `api_keys`, every route but health needs `Authorization: Bearer <key>`.
    `request_log` gets what was served (and is drained on shutdown); `request_ids` gives
    every response an X-Request-Id (off inside Ray Serve, whose proxy does it); either way
    every log line of a request carries it. `feedback_traces` attaches feedback to the rated
    answers' MLflow traces.
    """

    watch = rag_routes.HealthWatch(rag) if rag is not None else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await host.start()
        tasks = []
        if watch is not None:
            tasks.append(asyncio.create_task(watch.run(), name="rag-health"))
        if request_log is not None:
            tasks.append(asyncio.create_task(request_log.run(), name="request-log-metrics"))
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await host.stop()
        if feedback_traces is not None:
            feedback_traces.stop()
        if request_log is not None:
            await asyncio.to_thread(request_log.close)

    app = FastAPI(
        title="Lakeserve", version=v2.SERVER_VERSION, description=DESCRIPTION, lifespan=lifespan
    )
    app.state.host = host
    app.state.api_keys = [key.encode() for key in api_keys or []]
    app.state.rag = rag
    app.state.feedback = feedback
    app.state.request_log = request_log
    app.state.rag_health = watch
    app.state.rag_budget = Budget(host.options.rag_max_concurrent)
    app.state.feedback_traces = feedback_traces
    install_error_handlers(app)
    app.add_middleware(LogContextMiddleware)
    if request_ids:  # added last: runs first, so the log context sees the id it gives
        app.add_middleware(RequestIdMiddleware)
    for router in (health.router, v2.router, models.router, predict.router, metrics.router):
        app.include_router(router)
    if rag is not None:
        app.include_router(rag_routes.health)
        app.include_router(rag_routes.router)
        if feedback is not None:
            app.include_router(rag_routes.feedback)
        app.include_router(openai.router)
    install_openapi(
        app,
        [InferRequest, InvocationRequest, QueryRequest, FeedbackRequest, ChatCompletionRequest],
    )
    return app
