"""The hosted models: which alias each follows and which version it serves."""

from __future__ import annotations

from fastapi import APIRouter

from lakeserve.api.deps import Authorized, HostDep
from lakeserve.api.errors import ERROR_RESPONSES
from serving.host import HostedModel

router = APIRouter(tags=["models"], dependencies=[Authorized], responses=ERROR_RESPONSES)


@router.get("/models", response_model=list[HostedModel])
async def list_models(host: HostDep) -> list[HostedModel]:
    """List hosted models, the alias each follows and the version it serves in the replica
    that answers."""
    return [slot.describe(host.replica) for slot in host.slots.values()]
