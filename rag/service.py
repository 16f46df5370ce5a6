"""The RAG service: answers queries and chat completions; implements `rag.api.RagApi` in process."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import structlog
from structlog.contextvars import bound_contextvars

from kernel.errors import LakeserveError, NotFound, NotReady
from rag.chain import Answer, Prepared, RagChain, history_messages
from rag.llm import chat_model
from rag.retrieval import HybridRetriever
from rag.schemas import (
    RAG_MODEL,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ModelCard,
    ModelList,
    QueryRequest,
    QueryResponse,
    RagHealth,
    ResponseMessage,
    Usage,
)
from rag.settings import RagSettings
from rag.store import Index
from rag.tracing import AnswerTrace, AnswerTracer, finish

log = structlog.get_logger(__name__)


def open_retriever(settings: RagSettings) -> HybridRetriever:
    """Open the index and load the keyword index (raises ConfigError when not ingested)."""
    from rag.embeddings import open_embeddings

    index = Index.open(settings)
    retriever = HybridRetriever(index, open_embeddings(settings), settings.tuning())
    retriever.refresh()
    return retriever


def open_chain(settings: RagSettings) -> RagChain:
    """Return a ready chain over the configured index and LLM."""
    return RagChain(
        open_retriever(settings),
        chat_model(settings) if settings.generates else None,
        k=settings.rag_k,
        max_tokens=settings.llm_max_tokens,
    )


class RagService:
    """Owns the chain; opens the index when it exists and follows it as ingestion changes it."""

    def __init__(self, settings: RagSettings) -> None:
        self.settings = settings
        self.chain: RagChain | None = None
        self.detail: str | None = "starting"
        self.created = int(time.time())
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self.tracer = AnswerTracer(settings)

    def start(self) -> None:
        """Open the index now if possible and keep following it from a background thread;
        connect the answers' tracing to MLflow from another."""
        self.tracer.start()
        self.refresh()
        self._thread = threading.Thread(target=self._follow, name="rag-follow", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following the index."""
        self._stopped.set()
        self.tracer.stop()

    def _follow(self) -> None:
        while not self._stopped.wait(self.settings.rag_refresh_s):
            self.refresh()

    def refresh(self) -> None:
        """Open the index (first time) or reload the keyword index if ingestion changed it."""
        try:
            if self.chain is None:
                self.chain = open_chain(self.settings)
            else:
                self.chain.retriever.refresh()
            self.detail = None
        except LakeserveError as exc:
            # Not ingested yet, or Chroma down: keep answering 503 with the reason, keep trying.
            self.detail = str(exc)
            log.warning("rag index unavailable", detail=self.detail)
        except Exception as exc:
            self.detail = f"{type(exc).__name__}: {exc}"
            log.exception("rag refresh failed")

    def _ready_chain(self) -> RagChain:
        if self.chain is None or self.chain.retriever.size == 0:
            reason = self.detail or "the index is empty: run `lakeserve rag ingest`"
            raise NotReady(f"RAG is not ready: {reason}")
        return self.chain

    async def health(self) -> RagHealth:
        """Return readiness and what is served."""
        chunks = self.chain.retriever.size if self.chain else 0
        # `detail` is the last refresh's failure: Chroma down flips readiness until it is back.
        return RagHealth(
            ready=self.chain is not None and chunks > 0 and self.detail is None,
            collection=self.settings.rag_collection,
            chunks=chunks,
            llm=self.settings.llm_model if self.settings.generates else "none",
            answers="generated" if self.settings.generates else "quoted",
            detail=self.detail,
        )

    async def models(self) -> ModelList:
        """Return the OpenAI model list."""
        return ModelList(data=[ModelCard(id=RAG_MODEL, created=self.created)])

    async def query(self, request: QueryRequest, request_id: str | None = None) -> QueryResponse:
        """Answer POST /rag/query; `request_id` is the HTTP request's (logs and traces)."""
        ident = f"rag-{uuid.uuid4().hex}"
        with (
            bound_contextvars(request_id=request_id, answer_id=ident),
            self.tracer.answer(ident, request_id, "rag_query", request.question) as trace,
        ):
            answer = await self._answer(request, trace)
            _finish(trace, answer)
        return QueryResponse(
            id=ident,
            answer=answer.answer,
            found=answer.found,
            query=answer.query,
            citations=answer.citations,
            timings=answer.timings,
            mode=answer.mode,
        )

    async def _answer(
        self,
        request: QueryRequest,
        trace: AnswerTrace,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> Answer:
        chain = self._ready_chain()
        history = history_messages([(t.role, t.content) for t in request.history])
        return await chain.answer(
            request.question,
            history,
            request.k,
            request.filters,
            max_tokens,
            temperature,
            request.fallback,
            trace,
        )

    async def chat(
        self, request: ChatCompletionRequest, request_id: str | None = None
    ) -> ChatCompletion:
        """Answer a non-streamed chat completion."""
        _check_model(request)
        ident = f"chatcmpl-{uuid.uuid4().hex}"
        query = request.as_query()
        with (
            bound_contextvars(request_id=request_id, answer_id=ident),
            self.tracer.answer(ident, request_id, "chat", query.question) as trace,
        ):
            answer = await self._answer(query, trace, request.limit(), request.temperature)
            _finish(trace, answer)
        completion = ChatCompletion(
            id=ident,
            created=int(time.time()),
            model=RAG_MODEL,
            choices=[Choice(message=ResponseMessage(content=answer.answer))],
            usage=_usage(answer.usage),
            citations=answer.citations,
            mode=answer.mode,
        )
        completion._trace = {
            "query": answer.query,
            "found": answer.found,
            "timings": answer.timings,
        }
        return completion

    async def chat_stream(
        self, request: ChatCompletionRequest, request_id: str | None = None
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        """Yield chat.completion.chunk objects: citations first, then tokens, then the finish."""
        _check_model(request)
        ident = f"chatcmpl-{uuid.uuid4().hex}"
        # Closed with this generator (a client gone midway): the answer's spans end then.
        async with contextlib.aclosing(self._chat_stream(request, ident, request_id)) as chunks:
            # Bound around each step, never across a yield: a stream's consumer may resume it
            # from another task (Starlette's response), where a reset across yields would fail.
            while True:
                with bound_contextvars(request_id=request_id, answer_id=ident):
                    try:
                        chunk = await anext(chunks)
                    except StopAsyncIteration:
                        return
                yield chunk

    async def _chat_stream(
        self, request: ChatCompletionRequest, ident: str, request_id: str | None
    ) -> AsyncGenerator[ChatCompletionChunk, None]:
        query = request.as_query()
        chain = self._ready_chain()
        history = history_messages([(t.role, t.content) for t in query.history])
        with self.tracer.answer(ident, request_id, "chat_stream", query.question) as trace:
            prepared: Prepared = await chain.prepare(
                query.question, history, query.k, query.filters, query.fallback, trace
            )
            created = int(time.time())

            def chunk(delta: Delta, **extra: Any) -> ChatCompletionChunk:
                finish_reason = extra.pop("finish_reason", None)
                return ChatCompletionChunk(
                    id=ident,
                    created=created,
                    model=RAG_MODEL,
                    choices=[ChunkChoice(delta=delta, finish_reason=finish_reason)],
                    **extra,
                )

            yield chunk(
                Delta(role="assistant", content=""),
                citations=prepared.citations,
                found=prepared.retrieval.found,
            )
            usage: dict[str, int] = {}
            parts: list[str] = []
            async for piece in chain.stream(
                prepared, history, request.limit(), request.temperature
            ):
                if piece.usage_metadata:
                    usage = dict(piece.usage_metadata)  # type: ignore[arg-type]
                if piece.content:
                    parts.append(str(piece.content))
                    yield chunk(Delta(content=str(piece.content)))
            last = chunk(Delta(), finish_reason="stop", usage=_usage(usage), mode=prepared.mode)
            last._trace = {
                "query": prepared.query,
                "found": prepared.retrieval.found,
                "timings": dict(prepared.timings),
            }
            finish(
                trace,
                {"answer": "".join(parts).strip(), "citations": _cited(prepared.citations)},
                mode=prepared.mode,
                found=prepared.retrieval.found,
            )
            yield last


def _cited(citations: list[Any]) -> list[dict[str, Any]]:
    return [{"number": c.number, "doc_id": c.doc_id, "score": c.score} for c in citations]


def _finish(trace: AnswerTrace, answer: Answer) -> None:
    finish(
        trace,
        {"answer": answer.answer, "citations": _cited(answer.citations)},
        mode=answer.mode,
        found=answer.found,
    )


def _check_model(request: ChatCompletionRequest) -> None:
    if request.model != RAG_MODEL:
        raise NotFound(f"model {request.model!r} does not exist; this server has {RAG_MODEL!r}")


def _usage(usage: dict[str, int]) -> Usage:
    prompt, completion = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
