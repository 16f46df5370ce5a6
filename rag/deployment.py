"""The Ray Serve deployment answering RAG queries; the platform's ingress calls it by handle."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from lakehouse.logs import configure_logging
from rag.service import RagService
from rag.settings import RagSettings


@serve.deployment(
    name="RagServer",
    max_ongoing_requests=8,
    ray_actor_options={"num_cpus": 1},
)
class RagServer:
    """A replica: embedding model, Chroma client, keyword index and LLM in one process."""

    def __init__(self) -> None:
        configure_logging(colors=False)
        self.service = RagService(RagSettings())
        # Opens the index if it exists; otherwise keeps retrying and answers 503 meanwhile.
        self.service.start()

    async def health(self) -> dict[str, Any]:
        return self.service.health()

    async def models(self) -> dict[str, Any]:
        return self.service.models()

    async def query(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.service.query(payload)

    async def chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        return await self.service.chat(payload)

    async def chat_stream(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        async for event in self.service.chat_stream(payload):
            yield event

    def __del__(self) -> None:
        self.service.stop()
