"""Open Inference Protocol v2 (KServe/Triton) request decoding, JSON and binary tensor forms."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kernel.errors import MalformedRequest

BINARY_HEADER = "inference-header-content-length"
_NUMPY = {
    "BOOL": "?",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
DATATYPES = (*_NUMPY, "BYTES")


class TensorIn(BaseModel):
    """One input tensor of an inference request."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="Column name the tensor carries.", examples=["trip_distance"])
    shape: list[int] = Field(description="[rows] or [rows, 1].", examples=[[2]])
    datatype: str = Field(description="v2 datatype, e.g. FP64, INT64, BOOL, BYTES.")
    data: Any = Field(default=None, description="Row-major values (omitted for binary data).")
    parameters: dict[str, Any] | None = None


class OutputRequest(BaseModel):
    """An output the client asks for."""

    model_config = ConfigDict(extra="allow")

    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """POST /v2/models/{name}/infer body."""

    model_config = ConfigDict(extra="allow")

    id: str | None = Field(default=None, description="Echoed back in the response.")
    parameters: dict[str, Any] | None = None
    inputs: list[TensorIn] = Field(min_length=1)
    outputs: list[OutputRequest] | None = None


class TensorOut(BaseModel):
    """One output tensor of an inference response."""

    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferResponse(BaseModel):
    """Inference response: which model and version answered, and the outputs."""

    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[TensorOut]


class ServerMetadata(BaseModel):
    """GET /v2: the server and the protocol extensions it supports."""

    name: str = Field(examples=["lakeserve"])
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    """One input or output of a model: name, datatype and shape (-1: any number of rows)."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """GET /v2/models/{name}: the version served, its inputs and outputs."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReadiness(BaseModel):
    """Whether a model (or one version of it) is loaded and served."""

    name: str
    ready: bool


class Liveness(BaseModel):
    """The server process runs."""

    live: bool


class Readiness(BaseModel):
    """Every hosted model has a loaded version."""

    ready: bool


def parse_request(body: bytes, header_length: str | None) -> tuple[InferRequest, dict[str, Any]]:
    """Decode a JSON or binary-extension request into (request, column name -> values)."""
    if header_length is not None:
        try:
            json_length = int(header_length)
        except ValueError as exc:
            raise MalformedRequest(f"{BINARY_HEADER} must be an integer") from exc
        if not 0 < json_length <= len(body):
            raise MalformedRequest(f"{BINARY_HEADER} {json_length} exceeds the body size")
        header, binary = body[:json_length], body[json_length:]
    else:
        header, binary = body, b""
    try:
        request = InferRequest.model_validate(json.loads(header))
    except json.JSONDecodeError as exc:
        raise MalformedRequest(f"body is not valid JSON: {exc.msg} at byte {exc.pos}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise MalformedRequest(f"invalid inference request at {where}: {first['msg']}") from exc
    except (ValueError, RecursionError) as exc:  # bad UTF-8, absurd nesting
        raise MalformedRequest(f"body is not valid JSON: {type(exc).__name__}") from exc
    columns: dict[str, Any] = {}
    offset = 0
    for tensor in request.inputs:
        if tensor.name in columns:
            raise MalformedRequest(f"input {tensor.name} appears twice")
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                raise MalformedRequest(
                    f"input {tensor.name}: binary_data_size must be a non-negative integer"
                )
            chunk = binary[offset : offset + size]
            if len(chunk) != size:
                raise MalformedRequest(f"input {tensor.name}: binary data is truncated")
            offset += size
            columns[tensor.name] = _from_binary(tensor, chunk)
        else:
            columns[tensor.name] = _from_json(tensor)
    if offset != len(binary):
        raise MalformedRequest("binary data longer than the inputs declare")
    return request, columns


def _rows(tensor: TensorIn) -> int:
    shape = tensor.shape
    if not shape or len(shape) > 2 or (len(shape) == 2 and shape[1] != 1) or min(shape) < 0:
        raise MalformedRequest(
            f"input {tensor.name}: shape {shape} is not a column; use [rows] or [rows, 1]"
        )
    if tensor.datatype not in DATATYPES:
        raise MalformedRequest(
            f"input {tensor.name}: unknown datatype {tensor.datatype}; use one of "
            + ", ".join(DATATYPES)
        )
    return shape[0]


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _from_json(tensor: TensorIn) -> list[Any]:
    rows = _rows(tensor)
    if tensor.data is None:
        raise MalformedRequest(f"input {tensor.name}: data is missing")
    values = _flatten(tensor.data)
    if len(values) != rows:
        raise MalformedRequest(
            f"input {tensor.name}: shape {tensor.shape} needs {rows} values, got {len(values)}"
        )
    if tensor.datatype == "BYTES":
        return values
    if tensor.datatype == "BOOL":
        return values
    # Numeric tensors: reject strings and booleans here so the schema check sees numbers.
    for row, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MalformedRequest(
                f"input {tensor.name}: {tensor.datatype} data holds {value!r} at row {row}"
            )
    return values


def _from_binary(tensor: TensorIn, chunk: bytes) -> Any:
    rows = _rows(tensor)
    if tensor.datatype == "BYTES":
        values: list[str] = []
        position = 0
        while position < len(chunk):
            if position + 4 > len(chunk):
                raise MalformedRequest(f"input {tensor.name}: malformed BYTES element")
            length = int.from_bytes(chunk[position : position + 4], "little")
            raw = chunk[position + 4 : position + 4 + length]
            if len(raw) != length:
                raise MalformedRequest(f"input {tensor.name}: malformed BYTES element")
            values.append(raw.decode("utf-8", errors="replace"))
            position += 4 + length
        array: Any = values
        count = len(values)
    else:
        dtype = np.dtype(_NUMPY[tensor.datatype])
        if len(chunk) % dtype.itemsize:
            raise MalformedRequest(f"input {tensor.name}: binary size is not a multiple of {dtype}")
        array = np.frombuffer(chunk, dtype=dtype)
        count = len(array)
    if count != rows:
        raise MalformedRequest(
            f"input {tensor.name}: shape {tensor.shape} needs {rows} values, got {count}"
        )
    return array


def output_tensor(name: str, predictions: np.ndarray) -> TensorOut:
    """Encode model predictions as one FP64 (or BYTES) output tensor."""
    values = np.asarray(predictions)
    if values.dtype.kind in "iuf":
        data = [None if math.isnan(v) else v for v in values.astype("float64").tolist()]
        return TensorOut(name=name, shape=[len(values)], datatype="FP64", data=data)
    return TensorOut(
        name=name, shape=[len(values)], datatype="BYTES", data=[str(v) for v in values]
    )
