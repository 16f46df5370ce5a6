"""MLflow-style scoring: POST /predict/{name} answers like `mlflow models serve`'s /invocations."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from fastapi import APIRouter, Response

from kernel.errors import MalformedRequest
from lakeserve.api import inference
from lakeserve.api.deps import Authorized, BodyDep, HostDep, LimitedBody
from lakeserve.api.errors import ERROR_RESPONSES
from lakeserve.api.openapi import raw_body
from serving.invocations import (
    FORMATS,
    DomainReport,
    InvocationRequest,
    Predictions,
    columns_from_invocation,
)
from serving.v2 import output_tensor

router = APIRouter(tags=["mlflow"], dependencies=[Authorized], responses=ERROR_RESPONSES)
EXAMPLE = {
    "dataframe_split": {
        "columns": ["trip_distance", "passenger_count", "pickup_hour", "pickup_dow",
                    "is_weekend", "pickup_borough", "dropoff_borough", "is_airport", "rate_code"],
        "data": [[3.2, 1, 8, 2, False, "Manhattan", "Brooklyn", False, "Standard"]],
    }
}  # fmt: skip


def decode(body: bytes, _: LimitedBody) -> tuple[dict[str, Any], inference.Encoder]:
    """Decode an MLflow scoring payload into columns."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise MalformedRequest(f"body is not valid JSON: {exc.msg}") from exc
    except (ValueError, RecursionError) as exc:  # bad UTF-8, absurd nesting
        raise MalformedRequest(f"body is not valid JSON: {type(exc).__name__}") from exc

    def encode(_: str, predictions: np.ndarray, version: str, domain: DomainReport) -> Predictions:
        data = output_tensor("predictions", predictions).data
        return Predictions(
            predictions=data, model_version=version, warnings=domain.warnings or None
        )

    return columns_from_invocation(payload), encode


@router.post(
    "/predict/{name}",
    response_model=Predictions,
    openapi_extra=raw_body(
        InvocationRequest, EXAMPLE, f"An MLflow /invocations payload: one of {', '.join(FORMATS)}."
    ),
)
async def predict_mlflow(name: str, host: HostDep, body: BodyDep) -> Response:
    """Predict from an MLflow scoring payload; answers like `mlflow models serve`."""
    return await inference.run(host, name, "predict", body, decode)
