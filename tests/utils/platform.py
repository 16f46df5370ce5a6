"""Start `lakeserve serve` as a real process for integration tests, and stop it by PID.

The Serve config of a test is the committed serving/serve-config.yaml with one fixed replica per
deployment (deterministic metrics) and the test's own args; nothing is copied by hand.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from lakehouse.docs.pipeline import seed_docs
from lakehouse.seed import seed_trips
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from serving.settings import DEFAULT_SERVE_CONFIG
from tests.utils.cli import spawn
from tests.utils.processes import BIN, free_port, start_server

CONFIGS = Path(__file__).parents[2] / "training" / "configs"
# The full platform the integration tests share (tests/conftest.py `platform`).
MODEL = "fare-serve"
KEY = "test-key-1"
KEYS = f"{KEY},other"
PLATFORM_ARGS: dict[str, Any] = {
    "alias_poll_interval_s": 1,
    "max_batch_size": 32,
    "batch_wait_timeout_s": 0.02,
    "max_rows_per_request": 500,
    "max_body_bytes": 65536,
    "request_log": {"flush_s": 1.0},
}
LLM_MAX_TOKENS = 64
# A small corpus for ingestion behaviour: real stdlib docs, a few hundred chunks.
SMALL_MODULES = "json,shlex,textwrap,colorsys"
# Enough chunks (~400) that an ingestion run lasts long enough to be killed midway.
MEDIUM_MODULES = "json,shlex,textwrap,colorsys,argparse,difflib,string,calendar"


@dataclass(frozen=True)
class Platform:
    """A running serving platform and how to reach it."""

    url: str
    port: int
    env: dict[str, str]
    model: str
    process: subprocess.Popen[bytes]

    @property
    def home(self) -> Path:
        """Return the platform's LAKESERVE_HOME (lakehouse, feedback table)."""
        return Path(self.env["LAKESERVE_HOME"])


@dataclass(frozen=True)
class IndexEnv:
    """A lakehouse with documents and where its index lives."""

    home: Path
    env: dict[str, str]

    def ingest(self, *args: str) -> dict[str, Any]:
        """Run `lakeserve rag ingest --json` as a real process; return its summary."""
        result = spawn("rag", "ingest", "--json", *args, env=self.env)
        assert result.code == 0, result.err[-3000:]
        return dict(json.loads(result.out))


def clean_env(**values: str) -> dict[str, str]:
    """The test process environment without Lakeserve settings, plus `values`."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LAKESERVE_", "RAY_")) and k != "MLFLOW_TRACKING_URI"
    }
    return {**base, **values}


def prepare(home: Path, tracking_uri: str, model: str, config: str = "fare-ridge.yaml") -> None:
    """Seed a small lakehouse and register a first version of `model`."""
    seed_trips(Lakehouse(LakehouseSettings(home=home)), 6_000, seed=1)
    train(home, tracking_uri, model, config)


def train(
    home: Path, tracking_uri: str, model: str, config: str, *extra: str, **variables: str
) -> dict[str, Any]:
    """Run `lakeserve train` as a real process (`variables` added to its environment); return
    its JSON summary."""
    env = clean_env(LAKESERVE_HOME=str(home), MLFLOW_TRACKING_URI=tracking_uri, **variables)
    result = spawn(
        "train", "--config", str(CONFIGS / config), "--model-name", model, "--json", *extra, env=env
    )
    assert result.code == 0, result.err
    return dict(json.loads(result.out))


def small_docs_home(root: Path, modules: str = SMALL_MODULES) -> Path:
    """Build bronze/silver/gold docs for a few stdlib modules under `root`."""
    seed_docs(Lakehouse(LakehouseSettings(home=root)), modules.split(","))
    return root


def write_serve_config(
    path: Path, model: str, rag: bool = False, autoscaled: bool = False, **args: Any
) -> Path:
    """Write the committed Serve config hosting `model`, one replica per deployment.

    `rag` also deploys the RagServer behind the same ingress; `args` override the app's args.
    `autoscaled` keeps the committed autoscaling (its metrics, e.g. the desired replicas of
    the replicas-at-maximum alert) with min = max = 1; otherwise num_replicas is 1.
    """
    config = yaml.safe_load(DEFAULT_SERVE_CONFIG.read_text())
    [app] = config["applications"]
    app["args"] = {**app["args"], "models": [{"name": model, "alias": "champion"}], "rag": rag}
    app["args"].update(args)
    app["deployments"] = [d for d in app["deployments"] if rag or d["name"] != "RagServer"]
    for deployment in app["deployments"]:
        scaling = deployment.pop("autoscaling_config", None)
        if autoscaled and scaling:
            one = {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1}
            deployment["autoscaling_config"] = {**scaling, **one}
        else:
            deployment["num_replicas"] = 1
        # graceful_shutdown_timeout_s stays as committed: a rollout drains streams in flight
        # (tests/serving/test_rollout.py); idle replicas stop at once anyway.
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def serve_env(
    home: Path, tracking_uri: str, config: Path, **env: str
) -> tuple[int, str, dict[str, str]]:
    """Return (port, Ray temp dir, environment) for one `lakeserve serve` of a test."""
    port = free_port()
    ray_dir = f"/tmp/lsr-{port}"
    environment = clean_env(
        LAKESERVE_HOME=str(home),
        MLFLOW_TRACKING_URI=tracking_uri,
        LAKESERVE_HTTP_PORT=str(port),
        LAKESERVE_SERVE_CONFIG=str(config),
        LAKESERVE_RAY_TMPDIR=ray_dir,
        LAKESERVE_METRICS_PORT=str(free_port()),
        **env,
    )
    return port, ray_dir, environment


def run_platform(
    home: Path, tracking_uri: str, model: str, config: Path, **env: str
) -> Iterator[Platform]:
    """Start `lakeserve serve`, wait until ready, yield it, stop it by PID."""
    port, ray_dir, environment = serve_env(home, tracking_uri, config, **env)
    url = f"http://127.0.0.1:{port}"
    for process in start_server(
        [str(BIN / "lakeserve"), "serve", "--ready-timeout", "240"],
        f"{url}/v2/health/ready",
        home / f"serve-{port}.log",
        env=environment,
        timeout_s=300,
        grace_s=60,
        marker=ray_dir,
    ):
        yield Platform(url, port, environment, model, process)


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


def full_platform(home: Path, tracking_uri: str, index: IndexEnv) -> Iterator[Platform]:
    """`lakeserve serve` with MODEL registered and the RAG app on `index`, until ready."""
    prepare(home, tracking_uri, MODEL)
    config = write_serve_config(
        home / "serve.yaml", MODEL, rag=True, autoscaled=True, **PLATFORM_ARGS
    )
    for running in run_platform(
        home,
        tracking_uri,
        MODEL,
        config,
        LAKESERVE_API_KEYS=KEYS,
        LAKESERVE_CHROMA_URL=index.env["LAKESERVE_CHROMA_URL"],
        LAKESERVE_RAG_COLLECTION=index.env["LAKESERVE_RAG_COLLECTION"],
        LAKESERVE_LLM_MAX_TOKENS=str(LLM_MAX_TOKENS),
        # The local LLM writes the answers (checked against the sources); quoted answers, the
        # offline default, are tested in process on the same index (tests/rag/test_quality.py).
        LAKESERVE_ANSWER_MODE="generated",
    ):
        wait_for_rag(running.url)
        yield running
