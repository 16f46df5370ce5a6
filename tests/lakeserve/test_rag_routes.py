"""The RAG routes over a fake backend: health timeout, SSE framing, errors before and mid-stream."""

from __future__ import annotations

import asyncio
import gc
import json
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from kernel.errors import NotReady, Upstream
from lakeserve.api.app import create_app
from rag.schemas import (
    TURN_CHARS,
    ChatCompletionRequest,
    ChunkChoice,
    Delta,
    QueryRequest,
    QueryResponse,
)
from tests.utils.fakes import ROW, FakeRag, chunk, fake_host

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


def test_health_answers_at_once_and_says_when_rag_does_not_answer_in_time(
    slow: TestClient,
) -> None:
    started = time.monotonic()
    response = slow.get("/rag/health")
    assert time.monotonic() - started < 1  # probes never wait for a RAG replica
    assert response.status_code == 503
    assert response.json()["detail"] == "waiting for the first answer of a RAG replica"
    time.sleep(3.5)  # the background poll gave up after 3 s
    response = slow.get("/rag/health")
    assert response.status_code == 503
    assert response.json()["detail"] == "no RAG replica answered within 3s (starting or busy)"


def test_health_follows_rag_as_it_comes_and_goes() -> None:
    backend = FakeRag([])
    with client_for(backend) as client:
        watch = client.app.state.rag_health  # type: ignore[attr-defined]
        watch.every_s = 0.05
        deadline = time.monotonic() + 5
        while client.get("/rag/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        backend.health_delay = 10  # a replica stops answering
        deadline = time.monotonic() + 10
        while client.get("/rag/health").status_code != 503:
            assert time.monotonic() < deadline
            time.sleep(0.1)


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


class SlowRag(FakeRag):
    """Answers a query only once released: a long generation holding its slot."""

    def __init__(self) -> None:
        super().__init__([chunk(1)])
        self.release = asyncio.Event()

    async def query(self, request: QueryRequest, request_id: str | None = None) -> QueryResponse:
        await self.release.wait()
        raise NotReady("released")


def test_rag_beyond_its_budget_is_503_at_once_and_inference_still_answers() -> None:
    host, _ = fake_host({"models": [{"name": "fare"}], "rag_max_concurrent": 2})
    rag = SlowRag()
    app = create_app(host, rag=rag)

    async def scenario() -> None:
        await host.start()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            question = {"question": "How do I parse JSON?"}
            held = [asyncio.create_task(client.post("/rag/query", json=question)) for _ in range(2)]
            await asyncio.sleep(0.2)
            over = await client.post("/rag/query", json=question)
            assert over.status_code == 503
            assert over.headers["retry-after"] == "1"
            assert over.json() == {
                "error": "RAG is at capacity (2 answers in progress here); retry",
                "type": "overloaded",
            }
            stream = await client.post("/v1/chat/completions", json=CHAT)
            assert stream.status_code == 503 and stream.json()["error"]["code"] == "overloaded"
            predicted = await client.post("/predict/fare", json={"dataframe_records": [ROW]})
            assert predicted.status_code == 200
            rag.release.set()
            assert [r.status_code for r in await asyncio.gather(*held)] == [503, 503]
            assert app.state.rag_budget.used == 0
            # Slots are back: a stream takes one and gives it back after [DONE].
            stream = await client.post("/v1/chat/completions", json=CHAT)
            assert stream.status_code == 200 and stream.text.endswith("data: [DONE]\n\n")
            assert app.state.rag_budget.used == 0
        await host.stop()

    asyncio.run(scenario())


def test_a_stream_whose_client_left_before_the_first_byte_gives_its_slot_back() -> None:
    host, _ = fake_host({"models": [{"name": "fare"}], "rag_max_concurrent": 2})
    app = create_app(host, rag=FakeRag([chunk(1), chunk(2)]))
    body = json.dumps(CHAT).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions",
        "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": ("t", 80),
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    }  # fmt: skip

    messages = iter([{"type": "http.request", "body": body, "more_body": False}])

    async def receive() -> MutableMapping[str, Any]:
        await asyncio.sleep(0)
        return next(messages, {"type": "http.disconnect"})

    async def gone(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            raise OSError("the client closed the connection")

    async def scenario() -> None:
        await host.start()
        with pytest.raises(OSError):
            await app(scope, receive, gone)
        await host.stop()

    asyncio.run(scenario())
    gc.collect()
    assert app.state.rag_budget.used == 0
