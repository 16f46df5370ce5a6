"""Prometheus metrics of this replica."""

from __future__ import annotations

from fastapi import APIRouter, Response

from lakeserve.api.deps import Authorized, HostDep
from lakeserve.api.errors import ERROR_RESPONSES
from serving.metrics import CONTENT_TYPE

router = APIRouter(tags=["health"], dependencies=[Authorized], responses=ERROR_RESPONSES)


@router.get("/metrics", response_class=Response)
async def metrics(host: HostDep) -> Response:
    """Prometheus metrics of this replica."""
    return Response(host.metrics.render(), media_type=CONTENT_TYPE)
