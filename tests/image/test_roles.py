"""Every role of the built image, run the way a locked-down pod runs it.

Each command goes through `scripts/image-run.sh`: the image's user (10001), a read-only root
filesystem, only /tmp and /data writable, servers on the host's loopback. The image is built by
`scripts/image.sh` (`make test-image` does both); this tier is not part of `make test`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.utils.platform import write_serve_config
from tests.utils.processes import free_port, start_server

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[2]
RUN = ROOT / "scripts" / "image-run.sh"
TAG = os.environ.get("LAKESERVE_IMAGE", "localhost/lakeserve:ci")
MODEL = "fare-image"
MODULES = "json,shutil,tempfile"


def in_image(data: Path, *command: str, **env: str) -> list[str]:
    """The argv that runs `command` in the image with `data` as /data and `env` added."""
    pairs = [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]
    return [str(RUN), "-t", TAG, "-d", str(data), *pairs, "--", *command]


def run(
    data: Path, *command: str, timeout: float = 600, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `command` in the image to completion; fail the test with its output if it fails."""
    result = subprocess.run(
        in_image(data, *command, **env), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr[-4000:]}"
    return result


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The /data volume the roles share (the pods' PVC), with the image present."""
    exists = subprocess.run(["podman", "image", "exists", TAG], check=False)
    if exists.returncode != 0:
        pytest.fail(f"image {TAG} not found: build it with scripts/image.sh (make test-image)")
    return tmp_path_factory.mktemp("image-data")


@pytest.fixture(scope="module")
def mlflow_uri(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` from the image: sqlite and artifacts under /data."""
    port = free_port()
    command = in_image(
        data,
        "env", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false",
        "mlflow", "server",
        "--backend-store-uri", "sqlite:////data/mlflow.db",
        "--artifacts-destination", "/data/mlartifacts",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("image-mlflow") / "server.log"
    yield from (uri for _ in start_server(command, f"{uri}/health", log, timeout_s=180))


@pytest.fixture(scope="module")
def chroma_url(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`chroma run` from the image, persisting under /data."""
    port = free_port()
    command = in_image(
        data, "chroma", "run", "--path", "/data/chroma-server", "--host", "127.0.0.1",
        "--port", str(port),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("image-chroma") / "server.log"
    yield from (url for _ in start_server(command, f"{url}/api/v2/heartbeat", log, timeout_s=120))


@pytest.fixture(scope="module")
def lake(data: Path) -> Path:
    """A small lakehouse (trips and a few stdlib modules' docs) written by the image itself."""
    run(data, "lakeserve", "lake", "seed", "--scale", "3000", "--modules", MODULES)
    return data / ".lakeserve" / "lake"


@pytest.fixture(scope="module")
def trained(data: Path, lake: Path, mlflow_uri: str) -> dict[str, Any]:
    """`lakeserve train` in the image against the image's MLflow server: its JSON summary."""
    result = run(
        data,
        "lakeserve", "train", "--config", "training/configs/fare-ridge.yaml",
        "--model-name", MODEL, "--json",
        MLFLOW_TRACKING_URI=mlflow_uri,
    )  # fmt: skip
    return json.loads(result.stdout)


def test_help_runs_as_the_app_user_on_a_read_only_root(data: Path) -> None:
    result = run(
        data,
        "sh", "-c",
        "id -u; lakeserve --help >/dev/null && echo help-ok; "
        "touch /opt/venv/probe 2>/dev/null || echo root-read-only; "
        "touch /tmp/probe /data/probe && echo tmp-data-writable",
    )  # fmt: skip
    assert result.stdout.split() == ["10001", "help-ok", "root-read-only", "tmp-data-writable"]


def test_mlflow_server_answers_from_the_image(mlflow_uri: str) -> None:
    assert httpx.get(f"{mlflow_uri}/health", timeout=10).text.strip() == "OK"
    version = httpx.get(f"{mlflow_uri}/version", timeout=10).text.strip()
    assert version.startswith("3."), version


def test_train_registers_and_promotes_against_the_mlflow_server(
    trained: dict[str, Any], lake: Path
) -> None:
    assert trained["version"] == "1"
    assert trained["promoted"] is True  # the first version has no champion to beat
    assert trained["data"]["table"] == "gold.trips"
    assert trained["data"]["rows"] > 2000
    assert (lake / "gold" / "trips" / "_delta_log").is_dir()  # written through /data


def test_serve_once_answers_its_self_check(
    data: Path, trained: dict[str, Any], mlflow_uri: str
) -> None:
    write_serve_config(data / "serve.yaml", MODEL)
    result = run(
        data,
        "lakeserve", "serve", "--once",
        timeout=900,
        MLFLOW_TRACKING_URI=mlflow_uri,
        LAKESERVE_SERVE_CONFIG="/data/serve.yaml",
        LAKESERVE_HTTP_PORT=str(free_port()),
        LAKESERVE_RAY_TMPDIR="/tmp/ray",
    )  # fmt: skip
    assert f"self-check: {MODEL} v{trained['version']} predicted" in result.stdout, result.stdout


def test_rag_ingest_fills_the_chroma_server(data: Path, lake: Path, chroma_url: str) -> None:
    result = run(
        data,
        "lakeserve", "rag", "ingest", "--executor", "local", "--json",
        LAKESERVE_CHROMA_URL=chroma_url,
    )  # fmt: skip
    summary = json.loads(result.stdout)
    assert summary["added"] > 0 and summary["chunks_written"] > 0, summary
    collections = httpx.get(
        f"{chroma_url}/api/v2/tenants/default_tenant/databases/default_database/collections",
        timeout=10,
    ).json()
    [collection] = [c for c in collections if c["name"] == summary["collection"]]
    count = httpx.get(
        f"{chroma_url}/api/v2/tenants/default_tenant/databases/default_database/collections/"
        f"{collection['id']}/count",
        timeout=10,
    ).json()
    assert count == summary["chunks_total"] == summary["chunks_written"]


def test_chat_page_is_healthy_and_exports_metrics(
    data: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    port, metrics_port = free_port(), free_port()
    command = in_image(
        data,
        "lakeserve", "chat", "--port", str(port),
        LAKESERVE_CHAT_METRICS_PORT=str(metrics_port),
        LAKESERVE_API_URL="http://127.0.0.1:9",  # no API: the page still serves and says so
    )  # fmt: skip
    log = tmp_path_factory.mktemp("image-chat") / "chat.log"
    url = f"http://127.0.0.1:{port}"
    for _ in start_server(command, f"{url}/_stcore/health", log, timeout_s=120):
        assert httpx.get(f"{url}/", timeout=10).status_code == 200
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert "lakeserve_chat_questions_total" in metrics
