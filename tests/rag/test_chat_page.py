"""The chat page's behaviour, run by Streamlit's AppTest against a recording HTTP API.

The browser tests (test_chat_browser.py) drive the real page against the real platform; these
check what a browser cannot see: what is sent with each question.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import rag.chat.app
from tests.utils.processes import free_port

APP = str(Path(rag.chat.app.__file__))
CITATION = {
    "number": 1,
    "doc_id": "json.dumps",
    "title": "json.dumps(obj, *, indent=None)",
    "snippet": "Serialize obj to a JSON formatted str.",
    "score": 0.03,
}


class RecordingApi(ThreadingHTTPServer):
    """Answers like the RAG API and keeps every request body."""

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.reply: tuple[int, Any] | None = None  # (status, body) instead of an answer
        self.found = True


class _Handler(BaseHTTPRequestHandler):
    server: RecordingApi

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._json(200, {"ready": True, "collection": "c", "chunks": 12, "llm": "fake"})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append((self.path, body))
        if self.server.reply is not None:
            self._json(*self.server.reply)
        elif self.path == "/rag/feedback":
            self._json(201, {"event_id": "e", "answer_id": "a", "table": "bronze.feedback",
                             "version": 0})  # fmt: skip
        else:
            self._stream(body)

    def _stream(self, body: dict[str, Any]) -> None:
        n = len(self.server.requests)
        found = self.server.found
        first = {"id": f"chatcmpl-{n}", "choices": [{"delta": {"content": ""}}],
                 "citations": [CITATION] if found else [], "found": found}  # fmt: skip
        text = f"Answer {n} [1]." if found else "I could not find this in the documents."
        events = [first, {"id": f"chatcmpl-{n}", "choices": [{"delta": {"content": text}}]}]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for event in events:
            self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingApi]:
    server = RecordingApi(free_port())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("LAKESERVE_API_URL", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.setenv("LAKESERVE_API_KEY", "page-key")
    st.cache_resource.clear()  # settings and client are per process: re-read them
    st.cache_data.clear()
    yield server
    server.shutdown()
    server.server_close()


def page() -> AppTest:
    app = AppTest.from_file(APP, default_timeout=30)
    return app.run()


def ask(app: AppTest, question: str) -> AppTest:
    app.chat_input[0].set_value(question)
    return app.run()


def markdown(app: AppTest) -> str:
    return "\n".join(str(m.value) for m in app.markdown)


def test_each_question_carries_the_conversation_so_far(api: RecordingApi) -> None:
    app = ask(page(), "How do I pretty-print JSON?")
    assert not app.exception
    ask(app, "And with sorted keys?")
    chats = [body for path, body in api.requests if path == "/v1/chat/completions"]
    assert chats[0]["messages"] == [{"role": "user", "content": "How do I pretty-print JSON?"}]
    assert chats[1]["messages"] == [
        {"role": "user", "content": "How do I pretty-print JSON?"},
        {"role": "assistant", "content": "Answer 1 [1]."},
        {"role": "user", "content": "And with sorted keys?"},
    ]
    assert chats[1]["stream"] is True and chats[1]["k"] == 5


def test_answer_shows_sources_and_new_chat_starts_over(api: RecordingApi) -> None:
    app = ask(page(), "How do I pretty-print JSON?")
    assert "Answer 1 [1]." in markdown(app)
    assert [e.label for e in app.expander] == ["**[1]** `json.dumps(obj, *, indent=None)`"]
    assert "Sources (1)" in [c.value for c in app.caption]
    new_chat = next(b for b in app.button if b.label == "New chat")
    app = new_chat.click().run()
    assert "Answer 1 [1]." not in markdown(app)
    assert "Ask the documentation" in markdown(app)
    ask(app, "Another one")
    chats = [body for path, body in api.requests if path == "/v1/chat/completions"]
    assert chats[-1]["messages"] == [{"role": "user", "content": "Another one"}]


def test_not_found_is_a_notice_not_an_answer(api: RecordingApi) -> None:
    api.found = False
    app = ask(page(), "What is the capital of France?")
    assert [str(i.value).split(" No passage")[0] for i in app.info] == [
        "**Not found in the documents.**"
    ]
    assert "I could not find this" not in markdown(app)
    assert not app.expander


def test_rejected_question_shows_the_api_message(api: RecordingApi) -> None:
    api.reply = (422, {"error": {"message": "the last user message exceeds 4000 characters"}})
    app = ask(page(), "x" * 10)
    errors = [e.value for e in app.error]
    assert errors == [
        "**The API rejected the request (422).** the last user message exceeds 4000 characters"
    ]
    api.reply = None
    ask(app, "How do I pretty-print JSON?")
    chats = [body for path, body in api.requests if path == "/v1/chat/completions"]
    assert len(chats[-1]["messages"]) == 1  # the failed exchange is not sent as history


def test_rating_sends_a_feedback_event(api: RecordingApi) -> None:
    app = ask(page(), "How do I pretty-print JSON?")
    app = app.feedback(key="rating-chatcmpl-1").set_value(0).run()  # thumbs down
    events = [body for path, body in api.requests if path == "/rag/feedback"]
    assert len(events) == 1
    event = events[0]
    assert event["rating"] == "down" and event["answer_id"] == "chatcmpl-1"
    assert event["question"] == "How do I pretty-print JSON?"
    assert event["answer"] == "Answer 1 [1]." and event["citations"] == ["json.dumps"]
    assert event["client"] == "chat" and event["comment"] is None
    assert "Feedback saved" in " ".join(str(c.value) for c in app.caption)
    app.text_input(key="comment-chatcmpl-1").set_value("too short")
    app = app.form_submit_button[0].click().run()
    events = [body for path, body in api.requests if path == "/rag/feedback"]
    assert [(e["rating"], e["comment"]) for e in events] == [("down", None), ("down", "too short")]
    assert events[0]["event_id"] != events[1]["event_id"]


def test_feedback_the_api_refuses_is_reported(api: RecordingApi) -> None:
    app = ask(page(), "How do I pretty-print JSON?")
    api.reply = (503, {"error": "lakehouse unavailable"})
    app = app.feedback(key="rating-chatcmpl-1").set_value(1).run()
    assert [w.value for w in app.warning] == [
        "Feedback not saved: The API is not ready (503): lakehouse unavailable"
    ]
