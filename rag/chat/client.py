"""The RAG API as the chat page sees it: streamed answers, health and feedback over HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from rag.chat.settings import ChatSettings
from rag.schemas import HISTORY_MESSAGES, RAG_MODEL

CONNECT_TIMEOUT_S = 5.0


class ApiError(Exception):
    """The API could not be used; `title` says how, the message says what to do."""

    def __init__(self, title: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.title = title
        self.status = status


@dataclass
class Start:
    """The first event of an answer: its id and sources, known before any token."""

    answer_id: str
    found: bool
    citations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Token:
    text: str


@dataclass
class Finish:
    """The last event: how the answer was produced (quoted, generated, quoted_fallback...)."""

    mode: str


class RagClient:
    """Calls one Lakeserve API; every failure becomes an ApiError with a readable message."""

    def __init__(self, settings: ChatSettings, transport: httpx.BaseTransport | None = None):
        self.url = settings.api_url
        headers = {}
        if settings.api_key is not None:
            headers["Authorization"] = f"Bearer {settings.api_key.get_secret_value()}"
        self.http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(settings.chat_timeout_s, connect=CONNECT_TIMEOUT_S),
            transport=transport,
        )

    def health(self) -> dict[str, Any]:
        """Return /rag/health's answer (ready or not); ApiError when the API is unreachable."""
        response = self._send("GET", "/rag/health", timeout=5.0)
        if response.status_code not in (200, 503):
            raise _rejected(response)
        body: dict[str, Any] = response.json()
        return body

    def ask(
        self, messages: list[dict[str, str]], k: int | None = None
    ) -> Iterator[Start | Token | Finish]:
        """Stream an answer to the conversation's last user message: Start, tokens, Finish."""
        body: dict[str, Any] = {"model": RAG_MODEL, "messages": messages, "stream": True}
        if k is not None:
            body["k"] = k
        for attempt in range(2):
            try:
                with self.http.stream("POST", "/v1/chat/completions", json=body) as response:
                    if response.status_code != 200:
                        response.read()
                        raise _rejected(response)
                    yield from _events(response.iter_lines())
                    return
            except httpx.RemoteProtocolError as exc:
                if attempt or not _unanswered(exc):
                    raise _unreachable(self.url, exc) from exc
            except httpx.TransportError as exc:
                raise _unreachable(self.url, exc) from exc

    def feedback(self, event: dict[str, Any]) -> dict[str, Any]:
        """Store a feedback event; return the receipt once it is committed."""
        response = self._send("POST", "/rag/feedback", json=event)
        if response.status_code != 201:
            raise _rejected(response)
        receipt: dict[str, Any] = response.json()
        return receipt

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in range(2):
            try:
                return self.http.request(method, path, **kwargs)
            except httpx.RemoteProtocolError as exc:
                if attempt or not _unanswered(exc):
                    raise _unreachable(self.url, exc) from exc
            except httpx.TransportError as exc:
                raise _unreachable(self.url, exc) from exc
        raise AssertionError("unreachable")


def _unanswered(exc: httpx.RemoteProtocolError) -> bool:
    """A kept-alive connection the server closed as the request went out (a proxy reloading):
    nothing was answered, and every call of this client is safe to send again (feedback
    carries its event id)."""
    return "without sending a response" in str(exc)


def history(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Return the turns to send with the next question: the page's (question, answer) pairs.

    Exchanges whose answer failed are left out; the API keeps no state, so this is all the
    context a follow-up question gets. Only the last HISTORY_MESSAGES are sent: the API
    answers with those and ignores older ones, so a long conversation never meets its limits.
    """
    turns: list[dict[str, str]] = []
    for question, answer in zip(messages[::2], messages[1::2], strict=False):
        if answer.get("error") or not answer.get("content"):
            continue
        turns += [
            {"role": "user", "content": question["content"]},
            {"role": "assistant", "content": answer["content"]},
        ]
    return turns[-HISTORY_MESSAGES:]


def _events(lines: Iterator[str]) -> Iterator[Start | Token | Finish]:
    started = False
    for line in lines:
        if not line.startswith("data: "):
            continue
        data = line[len("data: ") :]
        if data == "[DONE]":
            return
        event = json.loads(data)
        if "error" in event:
            error = event["error"]
            raise ApiError("The answer was interrupted", str(error.get("message", error)))
        if not started:
            started = True
            citations = event.get("citations") or []
            found = event.get("found")
            yield Start(
                answer_id=event["id"],
                found=bool(citations) if found is None else bool(found),
                citations=citations,
            )
        for choice in event.get("choices", []):
            text = (choice.get("delta") or {}).get("content")
            if text:
                yield Token(text)
        if event.get("mode"):
            yield Finish(str(event["mode"]))
    raise ApiError("The answer was interrupted", "the API closed the stream before the end")


def _unreachable(url: str, exc: httpx.TransportError) -> ApiError:
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        return ApiError("The API timed out", f"no answer from {url} in time ({exc!r})")
    reason = str(exc) or type(exc).__name__
    return ApiError(
        "The API is not reachable",
        f"cannot connect to {url} ({reason}). Is `lakeserve serve` running there?",
    )


def _rejected(response: httpx.Response) -> ApiError:
    status = response.status_code
    try:
        body = response.json()
        error = body.get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except (ValueError, AttributeError):
        message = None
    message = str(message or response.text[:300] or response.reason_phrase)
    if status == 401:
        title = "The API refused the key"
        message += " (set LAKESERVE_API_KEY for the chat page)"
    elif status == 503:
        title = "The API is not ready"
    elif status >= 500:
        title = "The API failed"
    else:
        title = "The API rejected the request"
    return ApiError(f"{title} ({status})", message, status)
