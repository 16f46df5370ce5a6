"""RAG fixtures: a real Chroma server, document lakehouses and a full-corpus index."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from lakehouse.docs.pipeline import seed_docs
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from tests.cli import BIN, spawn
from tests.conftest import free_port, start_server
from tests.serving.platform import Platform, clean_env, prepare, run_platform, write_serve_config

# A small corpus for ingestion behaviour: real stdlib docs, a few hundred chunks.
SMALL_MODULES = "json,shlex,textwrap,colorsys"
# Enough chunks (~400) that an ingestion run lasts long enough to be killed midway.
MEDIUM_MODULES = "json,shlex,textwrap,colorsys,argparse,difflib,string,calendar"


@dataclass(frozen=True)
class IndexEnv:
    """A lakehouse with documents and where its index lives."""

    home: Path
    env: dict[str, str]

    def ingest(self, *args: str) -> dict[str, object]:
        """Run `lakeserve rag ingest --json` as a real process; return its summary."""
        result = spawn("rag", "ingest", "--json", *args, env=self.env)
        assert result.code == 0, result.err[-3000:]
        return dict(json.loads(result.out))


@pytest.fixture(scope="session")
def chroma_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`chroma run` on 127.0.0.1 for the session, stopped by PID; yields its URL."""
    path = tmp_path_factory.mktemp("chroma-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "chroma"), "run", "--path", str(path), "--host", "127.0.0.1"]
    for _ in start_server(
        [*command, "--port", str(port)], f"{url}/api/v2/heartbeat", path / "server.log"
    ):
        yield url


def small_docs_home(root: Path, modules: str = SMALL_MODULES) -> Path:
    """Build bronze/silver/gold docs for a few stdlib modules under `root`."""
    seed_docs(Lakehouse(LakehouseSettings(home=root)), modules.split(","))
    return root


@pytest.fixture(scope="session")
def full_index(tmp_path_factory: pytest.TempPathFactory, chroma_url: str) -> IndexEnv:
    """The default corpus (whole stdlib) ingested with the Ray Data pipeline into the server."""
    home = tmp_path_factory.mktemp("rag-full")
    seed_docs(Lakehouse(LakehouseSettings(home=home)))
    env = clean_env(
        LAKESERVE_HOME=str(home),
        LAKESERVE_CHROMA_URL=chroma_url,
        LAKESERVE_RAG_COLLECTION="stdlib-full",
        LAKESERVE_RAY_TMPDIR=f"/tmp/lsr-ing{free_port()}",
    )
    index = IndexEnv(home, env)
    summary = index.ingest("--executor", "ray")
    assert summary["chunks_written"] == summary["chunks_total"] > 5000
    return index


def wait_for_rag(url: str, timeout_s: float = 300) -> None:
    """Wait for /rag/health to say ready (the RagServer replica loads after the models)."""
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/rag/health", timeout=10)
        if response.status_code == 200:
            return
        last = response.text
        time.sleep(0.5)
    raise TimeoutError(last)


def rag_platform(
    home: Path, mlflow_server: str, index: IndexEnv, model: str, key: str, max_tokens: int
) -> Iterator[Platform]:
    """`lakeserve serve` with a registered model and the RAG app on the full index, until ready."""
    prepare(home, mlflow_server, model)
    config = write_serve_config(home / "serve.yaml", model, rag=True)
    for running in run_platform(
        home,
        mlflow_server,
        model,
        config,
        LAKESERVE_API_KEYS=key,
        LAKESERVE_CHROMA_URL=index.env["LAKESERVE_CHROMA_URL"],
        LAKESERVE_RAG_COLLECTION=index.env["LAKESERVE_RAG_COLLECTION"],
        LAKESERVE_LLM_MAX_TOKENS=str(max_tokens),
    ):
        wait_for_rag(running.url)
        yield running
