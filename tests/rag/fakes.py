"""Fakes for fast RAG unit tests: a chat model that records prompts, a fixed retriever."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from rag.retrieval import Hit, Retrieval
from rag.store import StoredChunk


class RecordingChatModel(BaseChatModel):
    """Answers from a list, in order; keeps every prompt it was given."""

    responses: list[str]
    prompts: list[list[BaseMessage]] = Field(default_factory=list)
    fail: bool = False

    @property
    def _llm_type(self) -> str:
        return "recording"

    def _next(self, messages: list[BaseMessage]) -> str:
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

    def search(self, query: str, k: int, filters: Any = None, *args: Any) -> Retrieval:
        self.queries.append(query)
        return Retrieval(hits=self.hits[:k], best_similarity=0.6, found=bool(self.hits))
