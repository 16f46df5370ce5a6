"""The RAG routes over a fake backend: health timeout, SSE framing, errors before and mid-stream."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from kernel.errors import NotReady, Upstream
from lakeserve.api.app import create_app
from rag.schemas import TURN_CHARS, ChatCompletionRequest, ChunkChoice, Delta
from tests.utils.fakes import FakeRag, chunk, fake_host

CHAT = {"model": "lakeserve-rag", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def client_for(backend: FakeRag) -> TestClient:
    host, _ = fake_host()
    return TestClient(create_app(host, rag=backend))


@pytest.fixture
def slow() -> Iterator[TestClient]:
    with client_for(FakeRag([], health_delay=30)) as client:
        yield client


def test_rag_bodies_are_limited_and_auth_comes_before_reading_them() -> None:
    host, _ = fake_host({"models": [{"name": "fare"}], "max_body_bytes": 4096})
    app = create_app(host, api_keys=["k"], rag=FakeRag([chunk(1)]))
    big = json.dumps({**CHAT, "messages": [{"role": "user", "content": "x" * 10_000}]})
    key = {"Authorization": "Bearer k", "Content-Type": "application/json"}
    with TestClient(app) as client:
        for path in ("/rag/query", "/v1/chat/completions"):
            # Without a key: 401 whatever the body, which is neither read nor parsed.
            for body in ("{not json", big):
                response = client.post(path, content=body)
                assert response.status_code == 401, (path, response.text)
            response = client.post(path, content=big, headers=key)
            assert response.status_code == 413, (path, response.text)
            response = client.post(path, content="{not json", headers=key)
            assert response.status_code == 400, (path, response.text)
        response = client.post("/rag/query", json={"question": "hi", "k": 99}, headers=key)
        assert response.status_code == 422
        assert response.json()["error"] == "body.k: Input should be less than or equal to 20"


def test_chat_history_is_cut_to_what_answers_use_never_rejected() -> None:
    earlier = [
        {"role": "user" if n % 2 == 0 else "assistant", "content": f"m{n} " + "x" * 17_000}
        for n in range(100)
    ]
    request = ChatCompletionRequest.model_validate(
        {"model": "lakeserve-rag", "messages": [*earlier, {"role": "user", "content": "and?"}]}
    )
    query = request.as_query()
    assert [t.content.split()[0] for t in query.history] == [f"m{n}" for n in range(94, 100)]
    assert all(len(t.content) == TURN_CHARS for t in query.history)
    assert query.question == "and?"


def test_health_that_does_not_answer_in_time_is_503(slow: TestClient) -> None:
    response = slow.get("/rag/health")
    assert response.status_code == 503
    assert response.json()["detail"] == "no RAG replica answered within 3s (starting or busy)"


def test_stream_frames_events_and_ends_with_done() -> None:
    events = [chunk(1), chunk(2)]
    with client_for(FakeRag(events)) as client:
        response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    first, second = (e.model_dump_json() for e in events)
    assert response.text == f"data: {first}\n\ndata: {second}\n\ndata: [DONE]\n\n"


def test_error_before_the_first_event_is_an_http_error_in_openai_shape() -> None:
    with client_for(FakeRag([NotReady("RAG is not ready: the index is empty")])) as client:
        response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "message": "RAG is not ready: the index is empty",
            "type": "server_error",
            "param": None,
            "code": "not_ready",
        }
    }


def test_error_mid_stream_becomes_an_error_event_then_done() -> None:
    with client_for(FakeRag([chunk(1), Upstream("LLM failed: timeout")])) as client:
        response = client.post("/v1/chat/completions", json=CHAT)
    events = [line for line in response.text.split("\n\n") if line]
    # The same body as an HTTP 502 under /v1: one shape for every OpenAI error.
    assert json.loads(events[1][6:]) == {
        "error": {
            "message": "LLM failed: timeout",
            "type": "server_error",
            "param": None,
            "code": "upstream_error",
        }
    }
    assert events[-1] == "data: [DONE]"


def test_upstream_failure_is_502_and_not_ready_is_503_on_rag_query() -> None:
    with client_for(FakeRag([])) as client:
        chat = client.post("/v1/chat/completions", json={**CHAT, "stream": False})
        query = client.post("/rag/query", json={"question": "x"})
    assert chat.status_code == 502 and chat.json()["error"]["code"] == "upstream_error"
    assert query.status_code == 503
    assert query.json() == {"error": "RAG is not ready: the index is empty", "type": "not_ready"}


def test_stream_events_stay_one_line_whatever_the_text() -> None:
    # SSE clients split lines like str.splitlines(): U+2028 inside raw UTF-8 would cut an event.
    tricky = chunk(1).model_copy(update={"choices": [ChunkChoice(delta=Delta(content="é\u2028x"))]})
    with client_for(FakeRag([tricky])) as client:
        response = client.post("/v1/chat/completions", json=CHAT)
    lines = [line for line in response.text.splitlines() if line]
    assert lines == [lines[0], "data: [DONE]"]
    assert json.loads(lines[0][6:])["choices"][0]["delta"]["content"] == "é\u2028x"
