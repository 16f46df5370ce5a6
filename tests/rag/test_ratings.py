"""Ratings attached to MLflow traces off the request path: a 201 while the attach is blocked, a
bounded queue that drops, ids we never issue not looked up, an MLflow that never answers called
once per retry period, and one experiment from concurrent first connects.

Attaching to a real trace on sqlite is tested in tests/rag/test_tracing.py, on the MLflow
server in tests/rag/test_tracing_serve.py.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kernel.settings import TrackingSettings
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakeserve.api.app import create_app
from rag.feedback import FeedbackStore
from rag.ratings import FeedbackTraces
from rag.schemas import FeedbackRequest
from rag.settings import RagSettings
from rag.tracing import AnswerTracer
from tests.utils.fakes import FakeRag, fake_host

ANSWER = f"chatcmpl-{'a' * 32}"
WAIT_S = 60.0  # generous: the box is shared; every wait below ends on an event


def rating(answer_id: str = ANSWER) -> FeedbackRequest:
    return FeedbackRequest(answer_id=answer_id, rating="up", question="q", answer="a")


class Blocked:
    """An attach that blocks until released, recording what it was given."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.calls: list[str] = []

    def __call__(self, request: FeedbackRequest, event_id: str) -> None:
        self.calls.append(request.answer_id)
        self.started.set()
        assert self.release.wait(WAIT_S)


@pytest.fixture
def silent_server() -> Iterator[tuple[str, list[socket.socket]]]:
    """An HTTP address that accepts connections and never answers (a hung MLflow)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    listener.close()
    for connection in accepted:
        connection.close()


def test_feedback_is_201_while_its_attach_is_blocked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    traces = FeedbackTraces(RagSettings(home=tmp_path))
    blocked = Blocked()
    monkeypatch.setattr(traces, "attach", blocked)
    host, _ = fake_host()
    store = FeedbackStore(Lakehouse(LakehouseSettings(home=tmp_path)))
    app = create_app(host, rag=FakeRag([]), feedback=store, feedback_traces=traces)
    event = {"answer_id": ANSWER, "rating": "up", "question": "q", "answer": "a"}
    with TestClient(app) as client:
        first = client.post("/rag/feedback", json=event)
        assert blocked.started.wait(WAIT_S)
        # The worker is stuck in an attach: the next feedback is stored and answered anyway.
        second = client.post("/rag/feedback", json=event)
        assert not blocked.release.is_set()
        blocked.release.set()
        traces.join()
    assert (first.status_code, second.status_code) == (201, 201), second.text
    assert second.json()["answer_id"] == ANSWER
    assert blocked.calls == [ANSWER, ANSWER]


def test_a_full_queue_drops_ratings_and_counts_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    traces = FeedbackTraces(RagSettings(home=tmp_path), queue_size=1)
    blocked = Blocked()
    monkeypatch.setattr(traces, "attach", blocked)
    assert traces.submit(rating(), "evt-1")
    assert blocked.started.wait(WAIT_S)  # taken by the worker: the queue is empty again
    assert traces.submit(rating(), "evt-2")
    assert traces.submit(rating(), "evt-3") is False
    blocked.release.set()
    traces.join()
    assert traces.outcomes == {"dropped": 1}
    assert len(blocked.calls) == 2


@pytest.mark.parametrize(
    "answer_id", ["chatcmpl-1", f"rag-{'A' * 32}", f"rag-{'a' * 32}' or '1'='1", "x" * 128]
)
def test_ids_we_never_issue_are_not_looked_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer_id: str
) -> None:
    traces = FeedbackTraces(RagSettings(home=tmp_path))

    def no_mlflow() -> bool:
        raise AssertionError("MLflow was called")

    monkeypatch.setattr(traces.tracer, "connect", no_mlflow)
    assert traces.submit(rating(answer_id), "evt-1") is False
    assert traces.attach(rating(answer_id), "evt-1") is None
    assert traces.outcomes == {"unknown_id": 2}


def test_an_mlflow_that_never_answers_is_asked_once_per_retry_period(
    tmp_path: Path,
    silent_server: tuple[str, list[socket.socket]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, accepted = silent_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    tracking = TrackingSettings(home=tmp_path, tracking_timeout_s=0.5)
    traces = FeedbackTraces(RagSettings(home=tmp_path), tracking, retry_after_s=3600)
    assert traces.attach(rating(), "evt-1") is None  # its /health timed out
    for n in range(5):
        assert traces.attach(rating(), f"evt-{n + 2}") is None
    assert len(accepted) == 1
    assert traces.outcomes == {"unavailable": 6}


def test_concurrent_first_connects_resolve_one_experiment(
    tmp_path: Path, tracking: TrackingSettings
) -> None:
    tracer = AnswerTracer(RagSettings(home=tmp_path), tracking)
    start = threading.Barrier(6)
    results: list[Any] = []

    def connect() -> None:
        start.wait(WAIT_S)
        results.append((tracer.connect(), tracer.experiment_id))

    threads = [threading.Thread(target=connect) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert results == [(True, tracer.experiment_id)] * 6 and tracer.experiment_id is not None
