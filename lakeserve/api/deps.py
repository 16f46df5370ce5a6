"""Dependencies of the routes: the model host, the RAG API, the feedback store, auth, the body.

Each is an `Annotated` alias, so a route states what it needs in its signature:

    async def predict(name: str, host: HostDep, body: BodyDep) -> Response: ...

`create_app` puts the objects on `app.state`; nothing here holds state of its own.

Every dependency is `async def`, even those that never await: FastAPI runs a plain `def`
dependency in a worker thread, three thread hops per inference request (~15% of a replica's
CPU under load, bench/serving.py).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from kernel.errors import PayloadTooLarge, Unauthorized
from lakeserve.api.observe import Budget
from rag.api import RagApi
from rag.feedback import FeedbackStore
from serving.host import ModelHost


async def get_host(request: Request) -> ModelHost:
    """Return the model host of this app."""
    host: ModelHost = request.app.state.host
    return host


async def get_rag(request: Request) -> RagApi:
    """Return the RAG API this app calls (the routes exist only when there is one)."""
    rag: RagApi = request.app.state.rag
    return rag


async def get_feedback(request: Request) -> FeedbackStore:
    """Return the feedback store (POST /rag/feedback exists only when there is one)."""
    store: FeedbackStore = request.app.state.feedback
    return store


async def get_rag_budget(request: Request) -> Budget:
    """Return the RAG concurrency budget of this ingress replica."""
    budget: Budget = request.app.state.rag_budget
    return budget


async def authorize(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> None:
    """Let the request through when auth is off or it carries a configured bearer key."""
    keys: list[bytes] = request.app.state.api_keys
    if not keys:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not any(
        hmac.compare_digest(token.encode(), key) for key in keys
    ):
        raise Unauthorized("missing or invalid API key: send Authorization: Bearer <key>")


class LimitedBody:
    """The request body, read on demand and never past the configured limit."""

    def __init__(self, request: Request, limit: int) -> None:
        self.request = request
        self.limit = limit

    async def read(self) -> bytes:
        """Return the body.

        Raises:
            PayloadTooLarge: it declares or streams more bytes than the limit.
        """
        declared = self.request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            raise PayloadTooLarge(
                f"body of {declared} bytes exceeds the limit of {self.limit} bytes"
            )
        # Chunked bodies declare no length: count while reading and stop at the limit.
        chunks, size = [], 0
        async for chunk in self.request.stream():
            size += len(chunk)
            if size > self.limit:
                raise PayloadTooLarge(f"body exceeds the limit of {self.limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def header(self, name: str) -> str | None:
        """Return a request header (e.g. the v2 binary-data length)."""
        return self.request.headers.get(name)


async def limited_body(request: Request) -> LimitedBody:
    """Return the body reader with the host's limit (read lazily, inside the route's metrics)."""
    host = await get_host(request)
    return LimitedBody(request, host.options.max_body_bytes)


M = TypeVar("M", bound=BaseModel)


def json_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """Return a dependency that reads the body within the limit and validates it as `model`.

    Routes take their JSON body this way rather than as a FastAPI body parameter, which is
    read and parsed before any dependency runs: here the router's auth check comes first, and
    nothing past the size limit is read. Errors are those of FastAPI's own validation.
    """

    async def parse(request: Request) -> M:
        raw = await (await limited_body(request)).read()
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            errors: list[Any] = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]
            raise RequestValidationError(errors) from None

    return parse


HostDep = Annotated[ModelHost, Depends(get_host)]
RagDep = Annotated[RagApi, Depends(get_rag)]
FeedbackDep = Annotated[FeedbackStore, Depends(get_feedback)]
BodyDep = Annotated[LimitedBody, Depends(limited_body)]
BudgetDep = Annotated[Budget, Depends(get_rag_budget)]
Authorized = Depends(authorize)
