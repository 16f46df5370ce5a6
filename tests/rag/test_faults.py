"""Faults of the vector store: Chroma hung or down answers 503 in bounded time, and recovers.

A real `chroma run` server, a real index, the RAG service in process; the server is frozen
(SIGSTOP), thawed, killed and started again on the same port and data.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kernel.errors import NotReady
from rag.schemas import QueryRequest, QueryResponse
from rag.service import RagService
from rag.settings import RagSettings
from tests.utils.platform import IndexEnv, clean_env, small_docs_home
from tests.utils.processes import BIN, free_port, start_server

TIMEOUT_S = 2.0
REFRESH_S = 0.5

pytestmark = pytest.mark.integration


def chroma(path: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    command = [str(BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1"]
    url = f"http://127.0.0.1:{port}"
    yield from start_server(
        [*command, "--port", str(port)], f"{url}/api/v2/heartbeat", path.parent / "chroma.log"
    )


def eventually(condition: Callable[[], bool], within_s: float) -> float:
    """Wait until `condition()` holds; return the seconds it took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < within_s, f"not within {within_s}s"
        time.sleep(0.1)
    return time.monotonic() - started


def test_chroma_hung_or_down_is_503_in_bounded_time_and_recovers(tmp_path: Path) -> None:
    home = small_docs_home(tmp_path / "home")
    port, data = free_port(), tmp_path / "chroma" / "data"
    data.mkdir(parents=True)
    url = f"http://127.0.0.1:{port}"
    server = chroma(data, port)
    process = next(server)
    env = clean_env(
        LAKESERVE_HOME=str(home), LAKESERVE_CHROMA_URL=url, LAKESERVE_RAG_COLLECTION="faults"
    )
    IndexEnv(home, env).ingest()
    settings = RagSettings(
        home=home,
        chroma_url=url,
        rag_collection="faults",
        chroma_timeout_s=TIMEOUT_S,
        rag_refresh_s=REFRESH_S,
        answer_mode="quoted",
    )
    service = RagService(settings)
    service.start()

    def ask() -> QueryResponse:
        return asyncio.run(service.query(QueryRequest(question="How do I parse a JSON string?")))

    def ready() -> bool:
        return asyncio.run(service.health()).ready

    try:
        assert ask().found and ready()

        os.killpg(process.pid, signal.SIGSTOP)  # hung: accepts connections, never answers
        started = time.monotonic()
        with pytest.raises(NotReady, match="vector store is unavailable"):
            ask()
        assert time.monotonic() - started < TIMEOUT_S * 2 + 2
        eventually(lambda: not ready(), REFRESH_S + TIMEOUT_S * 2 + 2)
        assert "Chroma" in (asyncio.run(service.health()).detail or "")
        os.killpg(process.pid, signal.SIGCONT)
        eventually(ready, 15)
        assert ask().found

        next(server, None)  # down: stopped by PID
        started = time.monotonic()
        with pytest.raises(NotReady, match="vector store is unavailable"):
            ask()
        assert time.monotonic() - started < TIMEOUT_S + 2
        eventually(lambda: not ready(), REFRESH_S + TIMEOUT_S + 2)

        server = chroma(data, port)  # back on the same port and data
        next(server)
        eventually(ready, 20)
        assert ask().found
    finally:
        service.stop()
        next(server, None)
