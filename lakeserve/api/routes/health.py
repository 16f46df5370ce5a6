"""Liveness and readiness of the server (open: probes carry no API key)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from lakeserve.api.deps import HostDep
from serving.v2 import Liveness, Readiness

router = APIRouter(tags=["health"])


@router.get("/v2/health/live", response_model=Liveness)
async def live() -> Liveness:
    """Return 200 while the server process runs."""
    return Liveness(live=True)


@router.get("/v2/health/ready", response_model=Readiness, responses={503: {"model": Readiness}})
async def ready(host: HostDep) -> Any:
    """Return 200 when every hosted model has a loaded version, 503 before."""
    if host.ready:
        return Readiness(ready=True)
    return JSONResponse(Readiness(ready=False).model_dump(), status_code=503)
