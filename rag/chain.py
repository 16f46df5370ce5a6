"""The RAG chain: rewrite follow-ups, retrieve, answer from numbered sources with citations."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

from kernel.errors import RequestError, Upstream
from rag.answer import quote, ungrounded
from rag.retrieval import Filters, Hit, Retrieval, Retriever
from rag.schemas import HISTORY_MESSAGES, AnswerMode, Citation, Fallback
from rag.tracing import AnswerTrace, stage

log = structlog.get_logger(__name__)

NOT_FOUND = "I could not find this in the documents."
SNIPPET_CHARS = 300
SOURCE_CHARS = 700  # per source in the prompt: small models have small context windows
HISTORY_CHARS = 1000  # per earlier message: keeps long conversations inside small context windows

ANSWER_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You answer questions using only the numbered sources below, which come from the "
            "documentation. Cite the sources you use by number in brackets, like [1]. If the "
            "sources do not answer the question, say that you could not find it.\n\n"
            "Sources:\n{sources}",
        ),
        MessagesPlaceholder("history"),
        ("human", "{question}"),
    ]
)
REWRITE_PROMPT = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "Rewrite the user's last question as one standalone question that can be understood "
            "without the conversation. Reply with the question only.",
        ),
        MessagesPlaceholder("history"),
        ("human", "Last question: {question}\nStandalone question:"),
    ]
)


@dataclass
class Prepared:
    """Everything known before generation starts."""

    question: str
    query: str
    retrieval: Retrieval
    citations: list[Citation]
    timings: dict[str, float] = field(default_factory=dict)
    mode: AnswerMode = "quoted"  # set by stream(): how the answer was produced
    problems: list[str] = field(default_factory=list)  # what failed the grounding check
    fallback: Fallback = "quoted"  # what to answer when the LLM endpoint fails
    llm_error: str | None = None  # the LLM failure an answer degraded around
    trace: AnswerTrace | None = None  # the answer's spans, when the caller traces it


@dataclass
class Answer:
    """A finished answer."""

    answer: str
    found: bool
    query: str
    citations: list[Citation]
    timings: dict[str, float]
    usage: dict[str, int]
    mode: AnswerMode = "quoted"

    def as_dict(self) -> dict[str, Any]:
        """Return the answer as plain JSON-able values."""
        return {**vars(self), "citations": [c.model_dump() for c in self.citations]}


def citation(number: int, hit: Hit) -> Citation:
    """Describe a hit for the caller: the title line is shown apart from the passage."""
    title = str(hit.chunk.metadata.get("title") or hit.doc_id)
    text = hit.chunk.text
    if text.startswith(title):
        text = text[len(title) :].lstrip()
    snippet = text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + "..."
    return Citation(
        number=number, doc_id=hit.doc_id, title=title, snippet=snippet, score=round(hit.score, 6)
    )


_BOUNDARY = re.compile(r"(?<=[.!?:])\s+|\n")


def sentences(text: str) -> tuple[list[str], str]:
    """Split streamed text into complete units (sentences, or whole code blocks) and the rest.

    Each unit keeps its trailing whitespace, so joined units give back the text.
    """
    units: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(text):
        unit = text[start : match.end()]
        if unit.count("```") % 2:  # inside a code block: wait for its end
            continue
        units.append(unit)
        start = match.end()
    return units, text[start:]


def _quotable(hit: Hit) -> tuple[str, str]:
    """Return (title, text) of a hit's document, from its first chunk when known."""
    chunk = hit.lead or hit.chunk
    return str(chunk.metadata.get("title") or hit.doc_id), chunk.text


def _sources(hits: Sequence[Hit]) -> str:
    return "\n\n".join(
        f"[{n}] {hit.doc_id}\n{hit.chunk.text[:SOURCE_CHARS]}" for n, hit in enumerate(hits, 1)
    )


def recent(history: Sequence[BaseMessage]) -> list[BaseMessage]:
    """Return the last messages of a conversation, each cut to HISTORY_CHARS characters."""
    kept: list[BaseMessage] = []
    for message in history[-HISTORY_MESSAGES:]:
        text = str(message.content)
        if len(text) > HISTORY_CHARS:
            message = message.model_copy(update={"content": text[:HISTORY_CHARS] + " ..."})
        kept.append(message)
    return kept


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 1)


class RagChain:
    """Question answering over a retriever: quoted from the sources, or generated and checked.

    Without an LLM every answer is quoted; with one it is generated, then checked by
    `rag.answer.ungrounded` and replaced by the quoted answer when it states anything the
    sources do not support.
    """

    def __init__(
        self,
        retriever: Retriever,
        llm: BaseChatModel | None = None,
        k: int = 5,
        max_tokens: int = 256,
    ) -> None:
        self.retriever = retriever
        self.llm = llm
        self.k = k
        self.max_tokens = max_tokens
        self._rewrite = REWRITE_PROMPT | llm | StrOutputParser() if llm else None
        self._answer = ANSWER_PROMPT | llm if llm else None

    async def rewrite(
        self, question: str, history: Sequence[BaseMessage], fallback: Fallback = "quoted"
    ) -> tuple[str, str | None]:
        """Turn a follow-up into a standalone question (unchanged when there is no history).

        Without an LLM, or when it fails and `fallback` is quoted, the last earlier question
        is prepended: retrieval then sees the topic. Returns the question and the LLM's error.

        Raises:
            Upstream: the LLM failed and `fallback` is none.
        """
        if not history:
            return question, None
        if self._rewrite is not None:
            try:
                text = await self._rewrite.ainvoke(
                    {"history": recent(history), "question": question}
                )
            except Exception as exc:
                error = f"LLM failed to rewrite the question: {type(exc).__name__}: {exc}"
                if fallback == "none":
                    raise Upstream(error) from exc
                log.warning("LLM failed, answering from the sources", error=error[:300])
                return _prepend_earlier(question, history), error
            return _standalone(text, question), None
        return _prepend_earlier(question, history), None

    async def prepare(
        self,
        question: str,
        history: Sequence[BaseMessage] = (),
        k: int | None = None,
        filters: Filters | None = None,
        fallback: Fallback = "quoted",
        trace: AnswerTrace | None = None,
    ) -> Prepared:
        """Rewrite, retrieve and pick the sources (as stages of `trace`, when given)."""
        timings: dict[str, float] = {}
        with trace.current() if trace is not None else contextlib.nullcontext():
            start = time.perf_counter()
            if history:
                with stage("rewrite", "LLM", {"question": question}) as step:
                    query, llm_error = await self.rewrite(question, history, fallback)
                    step.output(query, llm_error=llm_error)
            else:
                query, llm_error = question, None
            timings["rewrite_ms"] = _ms(start)
            start = time.perf_counter()
            # The thread gets a copy of this context: the retriever's stages join the answer.
            retrieval = await asyncio.to_thread(self.retriever.search, query, k or self.k, filters)
            timings["retrieve_ms"] = _ms(start)
        citations = [citation(n, hit) for n, hit in enumerate(retrieval.hits, 1)]
        return Prepared(
            question,
            query,
            retrieval,
            citations,
            timings,
            fallback=fallback,
            llm_error=llm_error,
            trace=trace,
        )

    def _inputs(self, prepared: Prepared, history: Sequence[BaseMessage]) -> dict[str, Any]:
        return {
            "sources": _sources(prepared.retrieval.hits),
            "history": recent(history),
            "question": prepared.question,
        }

    async def _tokens(
        self,
        prepared: Prepared,
        history: Sequence[BaseMessage],
        max_tokens: int | None,
        temperature: float | None,
    ) -> AsyncIterator[AIMessageChunk]:
        assert self.llm is not None and self._answer is not None
        options: dict[str, Any] = {}
        if max_tokens:
            options["max_tokens"] = min(max_tokens, self.max_tokens)
        if temperature is not None:
            options["temperature"] = temperature
        answer = ANSWER_PROMPT | self.llm.bind(**options) if options else self._answer
        try:
            async for chunk in answer.astream(self._inputs(prepared, history)):
                if isinstance(chunk, AIMessageChunk):
                    yield chunk
        except RequestError:
            raise
        except Exception as exc:
            raise Upstream(f"LLM failed: {type(exc).__name__}: {exc}") from exc

    async def stream(
        self,
        prepared: Prepared,
        history: Sequence[BaseMessage] = (),
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[AIMessageChunk]:
        """Yield the answer in pieces, as the generate stage of `prepared.trace` (see _stream)."""
        inputs = {
            "question": prepared.question,
            "sources": [c.doc_id for c in prepared.citations],
        }
        llm = type(self.llm).__name__ if self.llm is not None else None
        trace = prepared.trace
        # Not made current: the stage spans this generator's yields.
        with (trace.stage if trace is not None else stage)(
            "generate", "LLM", inputs, llm=llm
        ) as step:
            parts: list[str] = []
            usage: Any = None
            async for chunk in self._stream(prepared, history, max_tokens, temperature):
                parts.append(str(chunk.content))
                usage = chunk.usage_metadata or usage
                yield chunk
            step.output(
                "".join(parts).strip(),
                mode=prepared.mode,
                grounding_problems=len(prepared.problems),
                llm_error=prepared.llm_error,
                output_tokens=(usage or {}).get("output_tokens"),
            )

    async def _stream(
        self,
        prepared: Prepared,
        history: Sequence[BaseMessage] = (),
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> AsyncIterator[AIMessageChunk]:
        """Yield the answer in pieces; sets `prepared.mode` (and `problems`) on the way.

        A generated answer streams sentence by sentence: each is checked against the sources
        before it is sent, and one that names an API or a source it was not given is dropped.
        When nothing passes, the quoted answer is sent instead. When the LLM endpoint fails
        before a sentence was sent and `prepared.fallback` is quoted, so is the quoted answer
        (mode retrieval_only). `max_tokens` can only lower the configured limit; `temperature`
        replaces the default.

        Raises:
            Upstream: the LLM failed after part of the answer was sent, or `fallback` is none.
        """
        if not prepared.retrieval.found:
            prepared.mode = "not_found"
            yield AIMessageChunk(content=NOT_FOUND)
            return
        start = time.perf_counter()
        sources = [_quotable(hit) for hit in prepared.retrieval.hits]
        if self.llm is None:
            prepared.mode = "quoted"
            yield AIMessageChunk(content=quote(prepared.question, sources))
            prepared.timings["generate_ms"] = _ms(start)
            return
        if prepared.llm_error:  # the rewrite found the LLM down: do not wait for it again
            prepared.mode = "retrieval_only"
            yield AIMessageChunk(content=quote(prepared.question, sources))
            prepared.timings["generate_ms"] = _ms(start)
            return
        texts = [text for _, text in sources]
        prepared.mode = "generated"
        sent, pending, usage = 0, "", None
        try:
            async for chunk in self._tokens(prepared, history, max_tokens, temperature):
                usage = chunk.usage_metadata or usage
                pending += str(chunk.content)
                units, pending = sentences(pending)
                for unit in units:
                    if unit.strip() and self._passes(unit, texts, prepared):
                        sent += 1
                        yield AIMessageChunk(content=unit)
        except Upstream as exc:
            if sent or prepared.fallback == "none":
                raise
            prepared.mode, prepared.llm_error = "retrieval_only", str(exc)
            log.warning("LLM failed, answering from the sources", error=str(exc)[:300])
            yield AIMessageChunk(content=quote(prepared.question, sources))
            prepared.timings["generate_ms"] = _ms(start)
            return
        if pending.strip() and self._passes(pending, texts, prepared):
            sent += 1
            yield AIMessageChunk(content=pending)
        if not sent:
            prepared.mode = "quoted_fallback"
            yield AIMessageChunk(content=quote(prepared.question, sources))
        prepared.timings["generate_ms"] = _ms(start)
        if usage:
            yield AIMessageChunk(content="", usage_metadata=usage)

    @staticmethod
    def _passes(unit: str, sources: list[str], prepared: Prepared) -> bool:
        problems = ungrounded(unit, sources)
        prepared.problems += problems
        return not problems

    async def answer(
        self,
        question: str,
        history: Sequence[BaseMessage] = (),
        k: int | None = None,
        filters: Filters | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        fallback: Fallback = "quoted",
        trace: AnswerTrace | None = None,
    ) -> Answer:
        """Answer a question in one piece."""
        prepared = await self.prepare(question, history, k, filters, fallback, trace)
        parts: list[str] = []
        usage: dict[str, int] = {}
        async for chunk in self.stream(prepared, history, max_tokens, temperature):
            parts.append(str(chunk.content))
            if chunk.usage_metadata:
                usage = dict(chunk.usage_metadata)  # type: ignore[arg-type]
        return Answer(
            answer="".join(parts).strip() or NOT_FOUND,
            found=prepared.retrieval.found,
            query=prepared.query,
            citations=prepared.citations,
            timings=prepared.timings,
            usage=usage,
            mode=prepared.mode,
        )


def _prepend_earlier(question: str, history: Sequence[BaseMessage]) -> str:
    earlier = [str(m.content) for m in history if isinstance(m, HumanMessage)]
    return f"{earlier[-1]} {question}" if earlier else question


def _standalone(text: str, question: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    # Small models sometimes answer instead of rewriting; keep the user's words then.
    if not lines or len(lines[0]) > 4 * max(len(question), 60):
        return question
    return lines[0]


def history_messages(turns: Sequence[tuple[str, str]]) -> list[BaseMessage]:
    """Convert (role, content) pairs from an API request into LangChain messages."""
    messages: list[BaseMessage] = []
    for role, content in turns:
        if role == "user":
            messages.append(HumanMessage(content=content))
        elif role == "assistant":
            messages.append(AIMessage(content=content))
    return messages
