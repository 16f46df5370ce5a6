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
from lakeserve.api.routes import health, metrics, models, openai, predict, v2
from lakeserve.api.routes import rag as rag_routes
from rag.api import RagApi
from rag.feedback import FeedbackStore
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
) -> FastAPI:
    """Build the API around a model host (and the RAG API and feedback store, when given).

    The app starts the host (first load, alias following) in its lifespan and stops it after.
    With `api_keys`, every route but health needs `Authorization: Bearer <key>`.
    """

    watch = rag_routes.HealthWatch(rag) if rag is not None else None

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await host.start()
        polling = asyncio.create_task(watch.run(), name="rag-health") if watch else None
        yield
        if polling is not None:
            polling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await polling
        await host.stop()

    app = FastAPI(
        title="Lakeserve", version=v2.SERVER_VERSION, description=DESCRIPTION, lifespan=lifespan
    )
    app.state.host = host
    app.state.api_keys = [key.encode() for key in api_keys or []]
    app.state.rag = rag
    app.state.feedback = feedback
    app.state.rag_health = watch
    app.state.rag_budget = Budget(host.options.rag_max_concurrent)
    install_error_handlers(app)
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
