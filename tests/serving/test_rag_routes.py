"""The RAG routes over a fake backend: health timeout, SSE framing, errors before and mid-stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kernel.errors import NotReady, Upstream
from lakeserve.api.app import create_app
from serving.host import ModelHost
from serving.metrics import ServingMetrics
from serving.options import ServingOptions
from tests.serving.fakes import FakeRegistry

HEALTHY = {"ready": True, "collection": "docs", "chunks": 3, "llm": "fake", "detail": None}
CHAT = {"model": "lakeserve-rag", "messages": [{"role": "user", "content": "hi"}], "stream": True}


class FakeBackend:
    """Scripted answers; `health_delay` simulates a replica that is still loading."""

    def __init__(self, events: list[Any], health_delay: float = 0.0) -> None:
        self.events = events
        self.health_delay = health_delay

    async def health(self) -> dict[str, Any]:
        await asyncio.sleep(self.health_delay)
        return HEALTHY

    async def models(self) -> dict[str, Any]:
        return {"object": "list", "data": []}

    async def query(self, payload: dict[str, Any]) -> dict[str, Any]:
        raise NotReady("RAG is not ready: the index is empty")

    async def chat(self, payload: dict[str, Any]) -> dict[str, Any]:
        raise Upstream("LLM failed: ConnectError")

    async def chat_stream(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for event in self.events:
            if isinstance(event, Exception):
                raise event
            yield event


def client_for(backend: FakeBackend) -> TestClient:
    options = ServingOptions.model_validate({"models": [{"name": "fare"}]})
    host = ModelHost(options, FakeRegistry({("fare", "champion"): "1"}), ServingMetrics(), False)  # type: ignore[arg-type]
    return TestClient(create_app(host, rag=backend))


@pytest.fixture
def slow() -> Iterator[TestClient]:
    with client_for(FakeBackend([], health_delay=30)) as client:
        yield client


def test_health_that_does_not_answer_in_time_is_503(slow: TestClient) -> None:
    response = slow.get("/rag/health")
    assert response.status_code == 503
    assert response.json()["detail"] == "no RAG replica answered within 3s (starting or busy)"


def test_stream_frames_events_and_ends_with_done() -> None:
    events = [{"n": 1}, {"n": 2}]
    with client_for(FakeBackend(events)) as client:
        response = client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.text == 'data: {"n":1}\n\ndata: {"n":2}\n\ndata: [DONE]\n\n'


def test_error_before_the_first_event_is_an_http_error_in_openai_shape() -> None:
    with client_for(FakeBackend([NotReady("RAG is not ready: the index is empty")])) as client:
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
    with client_for(FakeBackend([{"n": 1}, Upstream("LLM failed: timeout")])) as client:
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
    with client_for(FakeBackend([])) as client:
        chat = client.post("/v1/chat/completions", json={**CHAT, "stream": False})
        query = client.post("/rag/query", json={"question": "x"})
    assert chat.status_code == 502 and chat.json()["error"]["code"] == "upstream_error"
    assert query.status_code == 503
    assert query.json() == {"error": "RAG is not ready: the index is empty", "type": "not_ready"}
