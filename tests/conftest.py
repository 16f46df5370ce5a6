"""Session fixtures: real servers on 127.0.0.1 started by the tests and stopped by PID, and the
one full platform (models + RAG + LLM on Ray Serve) the integration tests share."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakehouse.docs.pipeline import seed_docs
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from tests.utils.platform import IndexEnv, Platform, clean_env, full_platform
from tests.utils.processes import BIN, free_port, start_server


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` (sqlite backend, proxied artifacts) on 127.0.0.1."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    command = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    uri = f"http://127.0.0.1:{port}"
    # No job executor (GenAI evaluation jobs, unused here): three Huey processes fewer.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    yield from (uri for _ in start_server(command, f"{uri}/health", root / "server.log", env=env))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real S3-compatible endpoint (moto_server) on 127.0.0.1."""
    root = tmp_path_factory.mktemp("s3-server")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    yield from (endpoint for _ in start_server(command, f"{endpoint}/moto-api/", root / "s3.log"))


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


@pytest.fixture(scope="session")
def platform(
    tmp_path_factory: pytest.TempPathFactory, mlflow_server: str, full_index: IndexEnv
) -> Iterator[Platform]:
    """The full platform: `lakeserve serve` with a registered model, RAG and the local LLM."""
    yield from full_platform(tmp_path_factory.mktemp("platform"), mlflow_server, full_index)


@pytest.fixture
def lake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every Lakeserve setting at a fresh home under tmp_path."""
    for name in list(os.environ):
        if name.startswith("LAKESERVE_") or name == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("LAKESERVE_HOME", str(home))
    return home
