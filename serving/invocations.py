"""Decode MLflow `/invocations` bodies (dataframe_split, dataframe_records, instances, inputs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kernel.errors import MalformedRequest

MAX_WARNINGS = 100
FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
Record = dict[str, Any]


class DataframeSplit(BaseModel):
    """Column names and rows of values, as pandas' `to_dict(orient="split")` gives them."""

    columns: list[str] = Field(examples=[["trip_distance", "rate_code"]])
    data: list[list[Any]] = Field(examples=[[[3.2, "Standard"]]])


class InvocationRequest(BaseModel):
    """An MLflow `/invocations` body: exactly one of the four formats, optionally `params`.

    Documents what POST /predict accepts; the route decodes the body itself (so every format
    problem gets the same message as in MLflow's scoring server).
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": [name]} for name in FORMATS]},
    )

    dataframe_split: DataframeSplit | None = None
    dataframe_records: list[Record] | None = Field(default=None, description="One object per row.")
    instances: list[Record] | dict[str, Any] | None = Field(
        default=None, description="Rows as objects, or column name -> values."
    )
    inputs: list[Record] | dict[str, Any] | None = Field(
        default=None, description="Rows as objects, or column name -> values."
    )
    params: dict[str, Any] | None = Field(default=None, description="Accepted and ignored.")


class DomainWarning(BaseModel):
    """One input value outside the domain the answering version was trained on."""

    row: int = Field(description="Row of the request (from 0).")
    column: str
    value: Any
    message: str = Field(
        examples=["column pickup_borough: 'Atlantis' at row 0 is outside the training domain "
                  "(one of Bronx, Brooklyn, Manhattan, Queens, Staten Island)"]
    )  # fmt: skip


class Predictions(BaseModel):
    """MLflow scoring server response, plus the version that answered."""

    predictions: list[float | None]
    model_version: str
    warnings: list[DomainWarning] | None = Field(
        default=None,
        description=f"Present when input values fall outside the training domain (the first "
        f"{MAX_WARNINGS}); the prediction is extrapolated and may be unreliable.",
    )


@dataclass(frozen=True)
class DomainReport:
    """What a response says about values outside the domain: the first warnings, and the
    count and columns of them all."""

    warnings: list[DomainWarning] = field(default_factory=list)  # at most MAX_WARNINGS
    values: int = 0
    columns: tuple[str, ...] = ()


def columns_from_invocation(body: Any) -> dict[str, list[Any]]:
    """Return column name -> values from an MLflow scoring payload."""
    if not isinstance(body, dict):
        raise MalformedRequest(f"body must be a JSON object with one of {', '.join(FORMATS)}")
    present = [key for key in FORMATS if key in body]
    unexpected = sorted(set(body) - set(FORMATS) - {"params"})
    if len(present) != 1 or unexpected:
        found = ", ".join(sorted(body)) or "nothing"
        raise MalformedRequest(
            f"body must have exactly one of {', '.join(FORMATS)} (and optionally params); "
            f"found {found}"
        )
    key = present[0]
    payload = body[key]
    if key == "dataframe_split":
        return _split(payload)
    if key == "dataframe_records":
        return _records(payload, key)
    # `instances` and `inputs`: a list of records, or a mapping of column -> values.
    if isinstance(payload, dict):
        return _mapping(payload, key)
    return _records(payload, key)


def _split(payload: Any) -> dict[str, list[Any]]:
    if not isinstance(payload, dict) or "columns" not in payload or "data" not in payload:
        raise MalformedRequest("dataframe_split must be an object with columns and data")
    columns, data = payload["columns"], payload["data"]
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise MalformedRequest("dataframe_split.columns must be a list of column names")
    if len(set(columns)) != len(columns):
        raise MalformedRequest("dataframe_split.columns has repeated names")
    if not isinstance(data, list):
        raise MalformedRequest("dataframe_split.data must be a list of rows")
    out: dict[str, list[Any]] = {name: [] for name in columns}
    for row_number, row in enumerate(data):
        if not isinstance(row, list) or len(row) != len(columns):
            raise MalformedRequest(
                f"dataframe_split.data row {row_number} must be a list of {len(columns)} values"
            )
        for name, value in zip(columns, row, strict=True):
            out[name].append(value)
    return out


def _records(payload: Any, key: str) -> dict[str, list[Any]]:
    if not isinstance(payload, list):
        raise MalformedRequest(f"{key} must be a list of records (objects)")
    if not payload:
        return {}
    if not all(isinstance(record, dict) for record in payload):
        raise MalformedRequest(f"{key} must be a list of records (objects), one per row")
    names = list(payload[0])
    out: dict[str, list[Any]] = {name: [] for name in names}
    for row_number, record in enumerate(payload):
        if list(record) != names and set(record) != set(names):
            raise MalformedRequest(
                f"{key} record {row_number} has columns {sorted(record)}, "
                f"record 0 has {sorted(names)}"
            )
        for name in names:
            out[name].append(record[name])
    return out


def _mapping(payload: dict[str, Any], key: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for name, values in payload.items():
        out[name] = values if isinstance(values, list) else [values]
    return out
