"""Spec-driven fuzzing: schemathesis generates requests from the served OpenAPI document.

Whatever a client sends, no operation answers 5xx, and every 4xx carries a message. Two runs:
the app over fakes in process (fast tier), and the real platform over HTTP (its own
/openapi.json, real models, RAG with the local LLM). Cases are derandomized, so a red run
replays the same cases; `LAKESERVE_FUZZ_EXAMPLES` raises the count for a longer search.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakeserve.api.app import create_app
from rag.feedback import FeedbackStore
from tests.utils.fakes import FakeRag, chunk, fake_host
from tests.utils.platform import KEY, Platform

EXAMPLES = int(os.environ.get("LAKESERVE_FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


def problem(response: Any, degraded: frozenset[int] = frozenset()) -> str | None:
    """What is wrong with an answer: a 5xx, or an error without a message (None: nothing).

    `degraded`: statuses a fake backend answers by design (its RAG is "down").
    """
    status = response.status_code
    if status >= 500 and status not in degraded:
        return f"{status} {response.text[:300]}"
    if status >= 400 and status != 405:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if not isinstance(message, str) or not message.strip():
            return f"{status} without a message: {response.text[:300]}"
    return None


def fuzz(
    schema: Any,
    call: Callable[[Any], Any],
    degraded: frozenset[int] = frozenset(),
    examples: int = EXAMPLES,
) -> tuple[int, list[str]]:
    """Run valid and invalid generated cases on every operation; return (cases, problems)."""
    cases, problems = 0, []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @settings(FUZZ, max_examples=examples)
        @given(case=strategy)
        def run(case: Any) -> None:
            nonlocal cases
            cases += 1
            found = problem(call(case), degraded)
            if found:
                problems.append(f"{case.operation.label}: {found}")

        run()
    return cases, problems


def served_in_process(tmp_path: Path, rag: FakeRag) -> Iterator[Any]:
    """The app over fakes behind uvicorn on loopback, and its OpenAPI as schemathesis sees it."""
    host, _ = fake_host()
    store = FeedbackStore(Lakehouse(LakehouseSettings(home=tmp_path)))
    app = create_app(host, rag=rag, feedback=store)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
            time.sleep(0.05)
        yield schemathesis.openapi.from_url(f"http://127.0.0.1:{port}/openapi.json")
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[Any]:
    yield from served_in_process(tmp_path, FakeRag([chunk(1), chunk(2)]))


class BrokenModels(FakeRag):
    async def models(self) -> Any:
        raise ValueError("a bug")


def test_the_fuzzer_reports_a_server_error(tmp_path: Path) -> None:
    for schema in served_in_process(tmp_path, BrokenModels([])):
        _, problems = fuzz(
            schema.include(path="/v1/models"), lambda case: case.call(timeout=30), examples=3
        )
        assert problems and set(problems) == {
            'GET /v1/models: 500 {"error":{"message":"internal error (ValueError)",'
            '"type":"server_error","param":null,"code":"internal"}}'
        }


def test_no_generated_request_gives_a_server_error_in_process(in_process: Any) -> None:
    # The fake RAG answers 503 (not ready) to queries and 502 (LLM down) to chats.
    cases, problems = fuzz(in_process, lambda case: case.call(timeout=30), frozenset({502, 503}))
    assert cases > 10 * 20
    assert problems == []


@pytest.mark.integration
def test_no_generated_request_gives_a_server_error_on_the_platform(platform: Platform) -> None:
    schema = schemathesis.openapi.from_url(f"{platform.url}/openapi.json")
    auth = {"Authorization": f"Bearer {KEY}"}
    cases, problems = fuzz(schema, lambda case: case.call(headers=auth, timeout=120))
    assert cases > 10 * 20
    assert problems == []
