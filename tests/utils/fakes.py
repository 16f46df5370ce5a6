"""Fakes for fast unit tests; each satisfies the protocol it stands in for (mypy checks it).

FakeRegistry -> serving.model.Registry, FixedRetriever -> rag.retrieval.Retriever,
FakeRag -> rag.api.RagApi, RecordingChatModel -> a LangChain chat model. The real components are
tested end to end against the real platform.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from kernel.domain import Domain, FeatureDomain
from kernel.errors import NotReady, Upstream
from rag.retrieval import Filters, Hit, Retrieval
from rag.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChunkChoice,
    Delta,
    ModelList,
    QueryRequest,
    QueryResponse,
    RagHealth,
)
from rag.store import StoredChunk
from serving.host import ModelHost
from serving.metrics import ServingMetrics
from serving.model import LoadedModel
from serving.options import ServingOptions
from serving.schema import Column, InputSchema

SCHEMA = InputSchema(
    (
        Column("trip_distance", "double"),
        Column("passenger_count", "integer"),
        Column("is_airport", "boolean"),
        Column("rate_code", "string"),
    )
)
ROW = {"trip_distance": 3.0, "passenger_count": 2, "is_airport": False, "rate_code": "Standard"}
# What the fake models were "trained" on (ROW is inside).
DOMAIN = Domain(
    (
        FeatureDomain("trip_distance", low=0.5, high=50.0),
        FeatureDomain("passenger_count", low=1, high=6),
        FeatureDomain("is_airport", values=frozenset({False, True})),
        FeatureDomain("rate_code", values=frozenset({"Standard", "JFK"})),
    )
)
HEALTHY = RagHealth(ready=True, collection="docs", chunks=3, llm="fake", detail=None)


class Doubler:
    """Predicts 2 x distance + passengers, so tests can compute expected values."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return (2 * frame["trip_distance"] + frame["passenger_count"]).to_numpy()


class FakeRegistry:
    """Aliases in a dict; `fail` makes every lookup fail like an unreachable server."""

    def __init__(self, aliases: dict[tuple[str, str], str], domain: Domain | None = DOMAIN) -> None:
        self.aliases = aliases
        self.domain = domain
        self.fail = False
        self.loads: list[tuple[str, str]] = []

    def version_of(self, name: str, alias: str) -> str:
        if self.fail:
            raise ConnectionError("registry unreachable")
        return self.aliases[(name, alias)]

    def load(self, name: str, version: str) -> LoadedModel:
        self.loads.append((name, version))
        return LoadedModel(name, version, SCHEMA, Doubler(), self.domain)


def fake_host(
    options: dict[str, Any] | None = None, version: str = "1"
) -> tuple[ModelHost, FakeRegistry]:
    """A model host over a FakeRegistry whose `fare@champion` is `version`, without batching."""
    registry = FakeRegistry({("fare", "champion"): version})
    hosting = ServingOptions.model_validate(options or {"models": [{"name": "fare"}]})
    return ModelHost(hosting, registry, ServingMetrics(), batching=False), registry


class RecordingChatModel(BaseChatModel):
    """Answers from a list, in order; keeps every prompt it was given."""

    responses: list[str]
    prompts: list[list[BaseMessage]] = Field(default_factory=list)
    fail: bool = False
    calls: int = 0  # failed ones included

    @property
    def _llm_type(self) -> str:
        return "recording"

    def _next(self, messages: list[BaseMessage]) -> str:
        self.calls += 1
        if self.fail:
            raise ConnectionError("endpoint down")
        self.prompts.append(messages)
        return self.responses[len(self.prompts) - 1]

    def _generate(self, messages: list[BaseMessage], *args: Any, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(self._next(messages)))])

    def _stream(
        self, messages: list[BaseMessage], *args: Any, **kwargs: Any
    ) -> Iterator[ChatGenerationChunk]:
        for word in self._next(messages).split(" "):
            yield ChatGenerationChunk(message=AIMessageChunk(content=word + " "))


def hit(doc_id: str, text: str, score: float = 0.03) -> Hit:
    """A retrieved chunk of `doc_id` whose title is the doc id."""
    chunk = StoredChunk(f"{doc_id}::0000", f"{doc_id}\n{text}", {"doc_id": doc_id, "title": doc_id})
    return Hit(chunk, score, similarity=0.6)


class FixedRetriever:
    """Returns the same hits for every query; remembers the queries."""

    def __init__(self, hits: list[Hit]) -> None:
        self.hits = hits
        self.queries: list[str] = []

    @property
    def size(self) -> int:
        return len(self.hits)

    def refresh(self) -> bool:
        return False

    def search(self, query: str, k: int, filters: Filters | None = None) -> Retrieval:
        self.queries.append(query)
        return Retrieval(hits=self.hits[:k], best_similarity=0.6, found=bool(self.hits))


def chunk(n: int) -> ChatCompletionChunk:
    """The `n`th token chunk of a streamed completion."""
    return ChatCompletionChunk(
        id="chatcmpl-fake",
        created=0,
        model="lakeserve-rag",
        choices=[ChunkChoice(delta=Delta(content=f"t{n}"))],
    )


class FakeRag:
    """Scripted RAG answers; `health_delay` simulates a replica that is still loading."""

    def __init__(
        self, events: Sequence[ChatCompletionChunk | Exception], health_delay: float = 0.0
    ) -> None:
        self.events = events
        self.health_delay = health_delay

    async def health(self) -> RagHealth:
        await asyncio.sleep(self.health_delay)
        return HEALTHY

    async def models(self) -> ModelList:
        return ModelList(data=[])

    async def query(self, request: QueryRequest, request_id: str | None = None) -> QueryResponse:
        raise NotReady("RAG is not ready: the index is empty")

    async def chat(
        self, request: ChatCompletionRequest, request_id: str | None = None
    ) -> ChatCompletion:
        raise Upstream("LLM failed: ConnectError")

    async def chat_stream(
        self, request: ChatCompletionRequest, request_id: str | None = None
    ) -> AsyncIterator[ChatCompletionChunk]:
        for event in self.events:
            if isinstance(event, Exception):
                raise event
            yield event
