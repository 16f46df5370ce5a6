"""Request and response models of the RAG API: /rag/query and the OpenAI-compatible routes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator

RAG_MODEL = "lakeserve-rag"
MAX_QUESTION_CHARS = 4000
MAX_MESSAGES = 64  # /rag/query history
MAX_CHAT_MESSAGES = 256  # /v1/chat/completions: OpenAI clients send the whole conversation
HISTORY_MESSAGES = (
    6  # earlier messages an answer uses (the rewrite and the prompt); older ones are ignored
)
TURN_CHARS = MAX_QUESTION_CHARS * 4
FilterValue = str | int | float | bool | list[str | int | float | bool]
ANSWER_MODES = ("quoted", "generated", "quoted_fallback", "retrieval_only", "not_found")
AnswerMode = Literal["quoted", "generated", "quoted_fallback", "retrieval_only", "not_found"]
MODE_DESCRIPTION = (
    "How the answer was produced: quoted (sentences and examples of the cited sources, "
    "nothing else), generated (by the LLM, checked against the sources), quoted_fallback "
    "(the LLM's answer named APIs or sources it was not given, so the quoted answer replaced "
    "it), retrieval_only (the LLM endpoint failed before answering; quoted from the sources "
    "instead, see `fallback`), not_found (nothing relevant in the documents)."
)
Fallback = Literal["quoted", "none"]
FALLBACK_DESCRIPTION = (
    "What to answer when the LLM endpoint fails before the answer starts: quoted (default) "
    "answers from the sources with mode retrieval_only; none answers 502 with the LLM's error."
)


class Turn(BaseModel):
    """A previous message of the conversation."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str = Field(max_length=TURN_CHARS)


class QueryRequest(BaseModel):
    """A question, optionally with the conversation so far (the API keeps no state)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"question": "How do I pretty-print JSON?", "k": 5, "filters": {}}]
        },
    )

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    k: int | None = Field(default=None, ge=1, le=20, description="Sources to retrieve.")
    filters: dict[str, FilterValue] = Field(
        default_factory=dict,
        description="Metadata filters: {field: value} or {field: [values]}, e.g. "
        '{"module": "json"} or {"kind": ["function", "method"]}.',
    )
    history: list[Turn] = Field(default_factory=list, max_length=MAX_MESSAGES)
    fallback: Fallback = Field(default="quoted", description=FALLBACK_DESCRIPTION)

    @field_validator("question")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("question is blank")
        return value.strip()


class Citation(BaseModel):
    """A source given to the LLM, numbered as in the answer's [n] markers."""

    number: int
    doc_id: str = Field(examples=["json.dumps"])
    title: str
    snippet: str
    score: float = Field(description="Fused retrieval score (reciprocal rank fusion).")


class QueryResponse(BaseModel):
    """An answer with its sources; `found` is False when nothing relevant was retrieved."""

    id: str = Field(
        description="The answer's id: rate it with POST /rag/feedback (answer_id); its MLflow "
        "trace carries it as tag lakeserve.answer_id.",
        examples=["rag-3f2a9c0d4e5b4a1f8c7d6e5f4a3b2c1d"],
    )
    answer: str
    found: bool
    query: str = Field(description="The standalone question used for retrieval.")
    citations: list[Citation]
    timings: dict[str, float] = Field(description="Milliseconds per stage.")
    mode: AnswerMode = Field(description=MODE_DESCRIPTION)


class TextPart(BaseModel):
    """A content part of an OpenAI message (text only)."""

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """An OpenAI chat message."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        """Return the message's text."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class ChatCompletionRequest(BaseModel):
    """OpenAI chat completion request; `k`, `filters` and `fallback` are Lakeserve extensions."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "model": RAG_MODEL,
                    "messages": [{"role": "user", "content": "How do I pretty-print JSON?"}],
                    "stream": False,
                }
            ]
        },
    )

    model: str = Field(description=f"Must be {RAG_MODEL}.")
    messages: list[ChatMessage] = Field(
        min_length=1,
        max_length=MAX_CHAT_MESSAGES,
        description=f"The conversation; answers use the last {HISTORY_MESSAGES} earlier user and "
        "assistant messages (each cut to 1,000 characters) and the final user message.",
    )
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0, le=2)
    n: int = Field(default=1, ge=1, le=1, description="Only 1 is supported.")
    k: int | None = Field(default=None, ge=1, le=20)
    filters: dict[str, FilterValue] = Field(default_factory=dict)
    fallback: Fallback = Field(default="quoted", description=FALLBACK_DESCRIPTION)

    @field_validator("messages")
    @classmethod
    def _ends_with_user(cls, messages: list[ChatMessage]) -> list[ChatMessage]:
        if messages[-1].role != "user":
            raise ValueError("the last message must have role 'user'")
        if not messages[-1].text().strip():
            raise ValueError("the last user message is empty")
        if len(messages[-1].text()) > MAX_QUESTION_CHARS:
            raise ValueError(f"the last user message exceeds {MAX_QUESTION_CHARS} characters")
        return messages

    def limit(self) -> int | None:
        """Return the requested completion length (either OpenAI field)."""
        return self.max_completion_tokens or self.max_tokens

    def as_query(self) -> QueryRequest:
        """Return the question, the history an answer uses and the retrieval options."""
        earlier = [m for m in self.messages[:-1] if m.role in ("user", "assistant")]
        history = [
            Turn(role=m.role, content=m.text()[:TURN_CHARS]) for m in earlier[-HISTORY_MESSAGES:]
        ]
        return QueryRequest(
            question=self.messages[-1].text(),
            k=self.k,
            filters=self.filters,
            history=history,
            fallback=self.fallback,
        )


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ResponseMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None = "stop"


class ChatCompletion(BaseModel):
    """OpenAI chat completion; `citations` lists the sources (Lakeserve extension)."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    citations: list[Citation]
    mode: AnswerMode = Field(description=MODE_DESCRIPTION)
    # For the request log, never sent: the retrieval query, `found` and the stage timings.
    _trace: dict[str, Any] = PrivateAttr(default_factory=dict)


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """One SSE event of a streamed completion; the first one carries the citations."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    citations: list[Citation] | None = None
    found: bool | None = Field(
        default=None, description="On the first chunk: False when nothing relevant was found."
    )
    usage: Usage | None = None
    mode: AnswerMode | None = Field(
        default=None, description="On the last chunk: " + MODE_DESCRIPTION
    )
    # On the last chunk, for the request log, never sent: query, found, stage timings.
    _trace: dict[str, Any] = PrivateAttr(default_factory=dict)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "lakeserve"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class RagHealth(BaseModel):
    """Whether the RAG service can answer, and what it serves."""

    ready: bool
    collection: str
    chunks: int
    llm: str
    answers: Literal["quoted", "generated"] = Field(
        default="quoted", description="quoted: from the sources, no LLM; generated: by `llm`."
    )
    detail: str | None = None


MAX_COMMENT_CHARS = 2000


class FeedbackRequest(BaseModel):
    """A user's rating of one answer, with an optional comment.

    Every call is one event in bronze.feedback; a later event for the same `answer_id`
    (a changed rating, an added comment) supersedes the earlier ones.
    """

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "answer_id": "chatcmpl-3f2a9c0d4e5b4a1f8c7d6e5f4a3b2c1d",
                    "rating": "up",
                    "comment": "Exactly what I needed",
                    "question": "How do I pretty-print JSON?",
                    "answer": "Use json.dumps with indent [1].",
                    "citations": ["json.dumps"],
                }
            ]
        },
    )

    event_id: str | None = Field(
        default=None,
        min_length=8,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Client-chosen id of this event, so a retried call can be recognised.",
    )
    answer_id: str = Field(
        min_length=1,
        max_length=128,
        description="The rated answer's `id`: rag-<32 hex> from /rag/query, chatcmpl-<32 hex> "
        "from /v1/chat/completions. Any id is stored; only these are attached to the "
        "answer's MLflow trace.",
    )
    request_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="X-Request-Id of the response that carried the answer: joins this "
        "feedback with silver.rag_requests.",
    )
    conversation_id: str | None = Field(default=None, max_length=128)
    rating: Literal["up", "down"]
    comment: str | None = Field(default=None, max_length=MAX_COMMENT_CHARS)
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    answer: str = Field(max_length=MAX_QUESTION_CHARS * 4)
    citations: list[str] = Field(
        default_factory=list, max_length=20, description="Doc ids of the answer's sources."
    )
    client: str = Field(default="api", max_length=64, description="Who sent it, e.g. chat.")

    @field_validator("comment")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None


class FeedbackReceipt(BaseModel):
    """Where the feedback was committed."""

    event_id: str
    answer_id: str
    table: str
    version: int = Field(description="Delta table version of the commit holding the event.")
