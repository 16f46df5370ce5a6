"""The serving HTTP API: Open Inference Protocol v2, MLflow-style /predict, health, metrics."""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from lakehouse.errors import (
    MalformedRequest,
    NotFound,
    NotReady,
    PayloadTooLarge,
    RequestError,
    Unauthorized,
)
from rag.feedback import FeedbackStore
from serving.errors import ERROR_RESPONSES, install_error_handlers, status_of
from serving.host import ModelHost, ModelSlot
from serving.invocations import FORMATS, columns_from_invocation
from serving.metrics import CONTENT_TYPE
from serving.rag_routes import RagBackend, rag_routers
from serving.v2 import BINARY_HEADER, InferRequest, InferResponse, output_tensor, parse_request

VERSION_HEADER = "X-Model-Version"
SERVER_NAME = "lakeserve"
SERVER_VERSION = "0.1.0"


class Liveness(BaseModel):
    live: bool


class Readiness(BaseModel):
    ready: bool


class ServerMetadata(BaseModel):
    name: str = Field(examples=[SERVER_NAME])
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReadiness(BaseModel):
    name: str
    ready: bool


class HostedModel(BaseModel):
    name: str
    alias: str
    version: str | None = Field(description="Version served now; null until loaded.")
    ready: bool
    last_error: str | None = Field(description="Last failure to check or load the alias.")


class Predictions(BaseModel):
    """MLflow scoring server response, plus the version that answered."""

    predictions: list[float | None]
    model_version: str


def _body_schema(model: type[BaseModel], example: dict[str, Any]) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema, "example": example}},
        }
    }


_INVOCATION_EXAMPLE = {
    "dataframe_split": {
        "columns": ["trip_distance", "passenger_count", "pickup_hour", "pickup_dow",
                    "is_weekend", "pickup_borough", "dropoff_borough", "is_airport", "rate_code"],
        "data": [[3.2, 1, 8, 2, False, "Manhattan", "Brooklyn", False, "Standard"]],
    }
}  # fmt: skip
_INFER_EXAMPLE = {
    "inputs": [
        {"name": "trip_distance", "shape": [1], "datatype": "FP64", "data": [3.2]},
        {"name": "rate_code", "shape": [1], "datatype": "BYTES", "data": ["Standard"]},
    ]
}


def create_app(
    host: ModelHost,
    api_keys: list[str] | None = None,
    manage_host: bool = True,
    rag: RagBackend | None = None,
    feedback: FeedbackStore | None = None,
) -> FastAPI:
    """Build the API around a model host (and a RAG backend, when given).

    `manage_host` starts and stops the host with the app.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_host:
            await host.start()
        yield
        if manage_host:
            await host.stop()

    app = FastAPI(
        title="Lakeserve",
        version=SERVER_VERSION,
        description="Registered MLflow models over Open Inference Protocol v2 and MLflow-style "
        "scoring; question answering over lakehouse documents (/rag, OpenAI-compatible /v1). "
        "Errors are JSON {error, type}; on /v1 they use OpenAI's error shape.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    keys = [key.encode() for key in api_keys or []]

    def authorize(authorization: Annotated[str | None, Header()] = None) -> None:
        if not keys:
            return
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not any(
            hmac.compare_digest(token.encode(), key) for key in keys
        ):
            raise Unauthorized("missing or invalid API key: send Authorization: Bearer <key>")

    health = APIRouter(tags=["health"])
    api = APIRouter(dependencies=[Depends(authorize)], responses=ERROR_RESPONSES)

    @health.get("/v2/health/live", response_model=Liveness)
    async def live() -> Liveness:
        """Return 200 while the server process runs."""
        return Liveness(live=True)

    @health.get("/v2/health/ready", response_model=Readiness, responses={503: {"model": Readiness}})
    async def ready() -> Any:
        """Return 200 when every hosted model has a loaded version, 503 before."""
        if host.ready:
            return Readiness(ready=True)
        return JSONResponse(Readiness(ready=False).model_dump(), status_code=503)

    @api.get("/v2", response_model=ServerMetadata, tags=["v2"])
    async def server_metadata() -> ServerMetadata:
        """Describe the server and the protocol extensions it supports."""
        return ServerMetadata(
            name=SERVER_NAME, version=SERVER_VERSION, extensions=["binary_tensor_data"]
        )

    @api.get("/models", response_model=list[HostedModel], tags=["models"])
    async def list_models() -> list[HostedModel]:
        """List hosted models, the alias each follows and the version it serves."""
        return [
            HostedModel(
                name=slot.spec.name,
                alias=slot.spec.alias,
                version=slot.current.version if slot.current else None,
                ready=slot.ready,
                last_error=slot.last_error,
            )
            for slot in host.slots.values()
        ]

    def loaded(name: str, version: str | None = None) -> ModelSlot:
        slot = host.slot(name)
        if slot.current is None:
            detail = f": {slot.last_error}" if slot.last_error else ""
            raise NotReady(f"model {name} is not loaded yet{detail}")
        if version is not None and version != slot.current.version:
            raise NotFound(
                f"model {name} version {version} is not served; "
                f"@{slot.spec.alias} is version {slot.current.version}"
            )
        return slot

    async def model_metadata(name: str, version: str | None = None) -> ModelMetadata:
        slot = loaded(name, version)
        model = slot.current
        assert model is not None
        return ModelMetadata(
            name=name,
            versions=[model.version],
            platform="mlflow_pyfunc",
            inputs=[
                TensorMetadata(name=c.name, datatype=c.v2_datatype, shape=[-1])
                for c in model.schema.columns
            ],
            outputs=[TensorMetadata(name="predictions", datatype="FP64", shape=[-1])],
        )

    async def model_ready(name: str, version: str | None = None) -> Any:
        slot = host.slot(name)
        ok = slot.current is not None and version in (None, slot.current.version)
        body = ModelReadiness(name=name, ready=ok).model_dump()
        return JSONResponse(body, status_code=200 if ok else 503)

    async def read_body(request: Request) -> bytes:
        limit = host.options.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"body of {declared} bytes exceeds the limit of {limit} bytes")
        # Chunked bodies declare no length: count while reading and stop at the limit.
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    async def infer(name: str, request: Request, version: str | None = None) -> Response:
        body = await read_body(request)
        parsed, columns = parse_request(body, request.headers.get(BINARY_HEADER))
        slot = loaded(name, version)
        model = slot.current
        assert model is not None
        rows = model.schema.check(columns, host.options.max_rows_per_request)
        predictions, served = await slot.predict(model, rows)
        answer = InferResponse(
            model_name=name,
            model_version=served,
            id=parsed.id,
            outputs=[output_tensor("predictions", predictions)],
        )
        return Response(
            answer.model_dump_json(exclude_none=True),
            media_type="application/json",
            headers={VERSION_HEADER: served},
        )

    async def predict(name: str, request: Request) -> Response:
        body = await read_body(request)
        try:
            payload = json.loads(body)
        except json.JSONDecodeError as exc:
            raise MalformedRequest(f"body is not valid JSON: {exc.msg}") from exc
        except (ValueError, RecursionError) as exc:  # bad UTF-8, absurd nesting
            raise MalformedRequest(f"body is not valid JSON: {type(exc).__name__}") from exc
        columns = columns_from_invocation(payload)
        slot = loaded(name)
        model = slot.current
        assert model is not None
        rows = model.schema.check(columns, host.options.max_rows_per_request)
        predictions, served = await slot.predict(model, rows)
        answer = Predictions(
            predictions=output_tensor("predictions", predictions).data, model_version=served
        )
        return Response(
            answer.model_dump_json(),
            media_type="application/json",
            headers={VERSION_HEADER: served},
        )

    v2_infer: dict[str, Any] = {"response_model": InferResponse, "tags": ["v2"],
                "openapi_extra": _body_schema(InferRequest, _INFER_EXAMPLE)}  # fmt: skip

    @api.get("/v2/models/{name}", response_model=ModelMetadata, tags=["v2"])
    async def get_model(name: str) -> ModelMetadata:
        """Describe a model: served version, input columns and datatypes, outputs."""
        return await model_metadata(name)

    @api.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadata, tags=["v2"])
    async def get_model_version(name: str, version: str) -> ModelMetadata:
        """Describe a model version (404 unless it is the one served)."""
        return await model_metadata(name, version)

    @api.get("/v2/models/{name}/ready", response_model=ModelReadiness, tags=["v2"])
    async def get_model_ready(name: str) -> Any:
        """Return 200 when the model has a loaded version, 503 before."""
        return await model_ready(name)

    @api.get(
        "/v2/models/{name}/versions/{version}/ready", response_model=ModelReadiness, tags=["v2"]
    )
    async def get_model_version_ready(name: str, version: str) -> Any:
        """Return 200 when this version is the one served, 503 otherwise."""
        return await model_ready(name, version)

    @api.post("/v2/models/{name}/infer", **v2_infer)
    async def infer_latest(name: str, request: Request) -> Response:
        """Predict with the version the alias points at (JSON or binary tensor data)."""
        return await observed(name, "v2_infer", lambda: infer(name, request))

    @api.post("/v2/models/{name}/versions/{version}/infer", **v2_infer)
    async def infer_version(name: str, version: str, request: Request) -> Response:
        """Predict with a specific version (404 unless it is the one served)."""
        return await observed(name, "v2_infer", lambda: infer(name, request, version))

    @api.post(
        "/predict/{name}",
        response_model=Predictions,
        tags=["mlflow"],
        openapi_extra={
            "requestBody": {
                "required": True,
                "description": f"An MLflow /invocations payload: one of {', '.join(FORMATS)}.",
                "content": {"application/json": {"example": _INVOCATION_EXAMPLE}},
            }
        },
    )
    async def predict_mlflow(name: str, request: Request) -> Response:
        """Predict from an MLflow scoring payload; answers like `mlflow models serve`."""
        return await observed(name, "predict", lambda: predict(name, request))

    @api.get("/metrics", tags=["health"], response_class=Response)
    async def metrics() -> Response:
        """Prometheus metrics of this replica."""
        return Response(host.metrics.render(), media_type=CONTENT_TYPE)

    async def observed(name: str, endpoint: str, work: Callable[[], Any]) -> Response:
        # Unknown names from the URL must not create new label values (unbounded series).
        label = name if name in host.slots else "_unknown"
        started = time.perf_counter()
        try:
            response: Response = await work()
        except Exception as exc:
            status, kind = status_of(exc) if isinstance(exc, RequestError) else (500, "internal")
            host.metrics.requests.labels(label, "none", endpoint, str(status)).inc()
            host.metrics.errors.labels(label, kind).inc()
            raise
        finally:
            host.metrics.latency.labels(label, endpoint).observe(time.perf_counter() - started)
        version = response.headers.get(VERSION_HEADER, "none")
        host.metrics.requests.labels(label, version, endpoint, str(response.status_code)).inc()
        return response

    app.include_router(health)
    app.include_router(api)
    if rag is not None:
        for router in rag_routers(rag, authorize, host.metrics, feedback):
            app.include_router(router)
    return app
