"""The RAG routes over a fake backend: health timeout, SSE framing, errors before and mid-stream."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from kernel.errors import NotReady, Upstream
from lakeserve.api.app import create_app
from rag.schemas import ChunkChoice, Delta
from tests.utils.fakes import FakeRag, chunk, fake_host

CHAT = {"model": "lakeserve-rag", "messages": [{"role": "user", "content": "hi"}], "stream": True}


def client_for(backend: FakeRag) -> TestClient:
    host, _ = fake_host()
    return TestClient(create_app(host, rag=backend))


@pytest.fixture
def slow() -> Iterator[TestClient]:
    with client_for(FakeRag([], health_delay=30)) as client:
        yield client


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
