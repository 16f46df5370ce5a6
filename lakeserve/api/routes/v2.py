"""Open Inference Protocol v2 (KServe/Triton): server and model metadata, readiness, infer."""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from lakeserve.api import inference
from lakeserve.api.deps import Authorized, BodyDep, HostDep, LimitedBody
from lakeserve.api.errors import ERROR_RESPONSES
from lakeserve.api.openapi import raw_body
from serving.host import ModelHost
from serving.invocations import DomainReport
from serving.v2 import (
    BINARY_HEADER,
    InferRequest,
    InferResponse,
    ModelMetadata,
    ModelReadiness,
    ServerMetadata,
    TensorMetadata,
    output_tensor,
    parse_request,
)

SERVER_NAME = "lakeserve"
SERVER_VERSION = "0.1.0"
EXAMPLE = {
    "inputs": [
        {"name": "trip_distance", "shape": [1], "datatype": "FP64", "data": [3.2]},
        {"name": "rate_code", "shape": [1], "datatype": "BYTES", "data": ["Standard"]},
    ]
}
INFER_BODY = raw_body(
    InferRequest,
    EXAMPLE,
    "JSON tensors, or the binary tensor data extension (a JSON header of "
    f"`{BINARY_HEADER}` bytes followed by the raw tensors).",
)

router = APIRouter(tags=["v2"], dependencies=[Authorized], responses=ERROR_RESPONSES)


def decode(body: bytes, request: LimitedBody) -> tuple[dict[str, Any], inference.Encoder]:
    """Decode a JSON or binary-extension inference request into columns."""
    parsed, columns = parse_request(body, request.header(BINARY_HEADER))

    def encode(
        name: str, predictions: np.ndarray, version: str, domain: DomainReport
    ) -> InferResponse:
        # Protocol parameters are scalars: the count and the columns (messages: /predict).
        parameters = (
            {
                "out_of_domain_values": domain.values,
                "out_of_domain_columns": ",".join(domain.columns),
            }
            if domain.values
            else None
        )
        return InferResponse(
            model_name=name,
            model_version=version,
            id=parsed.id,
            parameters=parameters,
            outputs=[output_tensor("predictions", predictions)],
        )

    return columns, encode


def metadata(host: ModelHost, name: str, version: str | None = None) -> ModelMetadata:
    """Describe the served version of a model: its inputs and outputs."""
    _, model = inference.loaded(host, name, version)
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


def readiness(host: ModelHost, name: str, version: str | None = None) -> JSONResponse:
    """Answer 200 when `name` (at `version`, if given) is served, 503 before it is loaded.

    A version other than the one served is 404, as for its metadata and infer routes.
    """
    slot = host.slot(name)
    if version is not None and slot.current is not None:
        inference.loaded(host, name, version)
    ok = slot.current is not None
    body = ModelReadiness(name=name, ready=ok).model_dump()
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/v2", response_model=ServerMetadata)
async def server_metadata() -> ServerMetadata:
    """Describe the server and the protocol extensions it supports."""
    return ServerMetadata(
        name=SERVER_NAME, version=SERVER_VERSION, extensions=["binary_tensor_data"]
    )


@router.get("/v2/models/{name}", response_model=ModelMetadata)
async def get_model(name: str, host: HostDep) -> ModelMetadata:
    """Describe a model: served version, input columns and datatypes, outputs."""
    return metadata(host, name)


@router.get("/v2/models/{name}/versions/{version}", response_model=ModelMetadata)
async def get_model_version(name: str, version: str, host: HostDep) -> ModelMetadata:
    """Describe a model version (404 unless it is the one served)."""
    return metadata(host, name, version)


@router.get("/v2/models/{name}/ready", response_model=ModelReadiness)
async def get_model_ready(name: str, host: HostDep) -> Any:
    """Return 200 when the model has a loaded version, 503 before."""
    return readiness(host, name)


@router.get("/v2/models/{name}/versions/{version}/ready", response_model=ModelReadiness)
async def get_model_version_ready(name: str, version: str, host: HostDep) -> Any:
    """Return 200 when this version is the one served, 404 for another, 503 before loading."""
    return readiness(host, name, version)


@router.post("/v2/models/{name}/infer", response_model=InferResponse, openapi_extra=INFER_BODY)
async def infer_latest(name: str, host: HostDep, body: BodyDep) -> Response:
    """Predict with the version the alias points at (JSON or binary tensor data)."""
    return await inference.run(host, name, "v2_infer", body, decode)


@router.post(
    "/v2/models/{name}/versions/{version}/infer",
    response_model=InferResponse,
    openapi_extra=INFER_BODY,
)
async def infer_version(name: str, version: str, host: HostDep, body: BodyDep) -> Response:
    """Predict with a specific version (404 unless it is the one served)."""
    return await inference.run(host, name, "v2_infer", body, decode, version)
