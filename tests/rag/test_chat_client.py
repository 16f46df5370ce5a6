"""The chat page's API client: SSE parsing, error messages, history (httpx mock transport)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from rag.chat.client import ApiError, RagClient, Start, Token, history
from rag.chat.settings import ChatSettings
from rag.schemas import HISTORY_MESSAGES

CITATION = {"number": 1, "doc_id": "json.dumps", "title": "json.dumps", "snippet": "s", "score": 1}


def sse(*events: dict[str, Any] | str) -> bytes:
    lines = [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events]
    return "".join(lines).encode()


def chunk(content: str | None = None, **extra: Any) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    return {"id": "chatcmpl-1", "choices": [{"index": 0, "delta": delta}], **extra}


def client_for(handler: Any, **settings: Any) -> RagClient:
    return RagClient(
        ChatSettings(api_url="http://api.test", **settings), transport=httpx.MockTransport(handler)
    )


def streaming(body: bytes, status: int = 200) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers={"content-type": "text/event-stream"})

    return handler


def test_stream_yields_start_then_tokens() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = sse(
            chunk("", citations=[CITATION], found=True), chunk("Use "), chunk("indent."), "[DONE]"
        )
        return httpx.Response(200, content=body)

    client = client_for(handler, api_key="k1")
    turns = [{"role": "user", "content": "q"}]
    events = list(client.ask(turns, k=3))
    assert events == [Start("chatcmpl-1", True, [CITATION]), Token("Use "), Token("indent.")]
    sent = json.loads(seen[0].content)
    assert sent == {"model": "lakeserve-rag", "messages": turns, "stream": True, "k": 3}
    assert seen[0].headers["authorization"] == "Bearer k1"
    assert seen[0].url.path == "/v1/chat/completions"


def test_not_found_is_read_from_the_first_event() -> None:
    body = sse(chunk("", citations=[], found=False), chunk("nothing"), "[DONE]")
    first = next(client_for(streaming(body)).ask([{"role": "user", "content": "q"}]))
    assert first == Start("chatcmpl-1", False, [])


def test_error_event_mid_stream_raises_with_its_message() -> None:
    body = sse(chunk("", citations=[CITATION]), chunk("par"), {"error": {"message": "LLM died"}})
    events = client_for(streaming(body)).ask([{"role": "user", "content": "q"}])
    assert isinstance(next(events), Start)
    assert next(events) == Token("par")
    with pytest.raises(ApiError, match="LLM died") as caught:
        next(events)
    assert caught.value.title == "The answer was interrupted"


def test_stream_cut_before_done_is_an_error() -> None:
    events = client_for(streaming(sse(chunk("", citations=[])))).ask([])
    with pytest.raises(ApiError, match="closed the stream before the end"):
        list(events)


@pytest.mark.parametrize(
    ("status", "body", "title", "message"),
    [
        (422, {"error": {"message": "k: must be <= 20"}}, "rejected the request (422)", "k: must"),
        (401, {"error": {"message": "bad key"}}, "refused the key (401)", "LAKESERVE_API_KEY"),
        (503, {"error": "RAG is not ready: run ingest"}, "not ready (503)", "run ingest"),
        (500, {"error": "internal"}, "failed (500)", "internal"),
    ],
)
def test_http_errors_become_readable(
    status: int, body: dict[str, Any], title: str, message: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body)

    with pytest.raises(ApiError, match=message) as caught:
        list(client_for(handler).ask([{"role": "user", "content": "q"}]))
    assert title in caught.value.title
    assert caught.value.status == status


def test_unreachable_api_says_where_and_what_to_do() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    client = client_for(handler)
    for call in (lambda: list(client.ask([])), client.health, lambda: client.feedback({})):
        with pytest.raises(ApiError, match=r"cannot connect to http://api\.test") as caught:
            call()
        assert caught.value.title == "The API is not reachable"


def test_a_connection_closed_before_any_answer_is_sent_once_more() -> None:
    # A kept-alive connection closed by a reloading proxy as the request went out.
    calls: list[str] = []
    closed = httpx.RemoteProtocolError("Server disconnected without sending a response.")

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) % 2:
            raise closed
        if request.url.path == "/rag/feedback":
            return httpx.Response(201, json={"version": 1})
        return httpx.Response(200, content=sse(chunk(""), chunk("hi"), "[DONE]"))

    client = client_for(handler)
    assert [e for e in client.ask([]) if isinstance(e, Token)] == [Token("hi")]
    assert client.feedback({"rating": "up"}) == {"version": 1}
    assert calls == ["/v1/chat/completions"] * 2 + ["/rag/feedback"] * 2

    def always_closed(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        raise closed

    calls.clear()
    with pytest.raises(ApiError, match="disconnected"):
        list(client_for(always_closed).ask([]))
    assert len(calls) == 2  # one retry, not a loop


def test_feedback_returns_the_receipt_or_raises() -> None:
    receipts = iter([httpx.Response(201, json={"table": "bronze.feedback", "version": 3})])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/rag/feedback":
            return httpx.Response(404)
        return next(receipts, httpx.Response(422, json={"error": "rating: must be up or down"}))

    client = client_for(handler)
    assert client.feedback({"rating": "up"})["version"] == 3
    with pytest.raises(ApiError, match="rating: must be up or down"):
        client.feedback({"rating": "meh"})


def test_history_pairs_questions_with_answers_and_skips_failures() -> None:
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q2"},
        {"role": "assistant", "content": "", "error": ("The API failed", "x")},
        {"role": "user", "content": "q3"},
        {"role": "assistant", "content": "a3"},
    ]
    assert history(messages) == [
        {"role": "user", "content": "q1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "q3"},
        {"role": "assistant", "content": "a3"},
    ]
    assert history([]) == []


def test_a_long_conversation_sends_only_the_history_the_api_uses() -> None:
    messages: list[dict[str, Any]] = []
    for n in range(40):  # 80 messages: more than the API takes, if all were sent
        messages += [
            {"role": "user", "content": f"q{n}"},
            {"role": "assistant", "content": f"a{n}"},
        ]
    turns = history(messages)
    assert len(turns) == HISTORY_MESSAGES
    assert turns[0] == {"role": "user", "content": f"q{40 - HISTORY_MESSAGES // 2}"}
    assert turns[-1] == {"role": "assistant", "content": "a39"}


def test_settings_reject_a_url_without_scheme() -> None:
    with pytest.raises(ValueError, match="must start with http"):
        ChatSettings(api_url="localhost:8000")
