"""Start `lakeserve serve` as a real process for integration tests, and stop it by PID."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lakehouse.seed import seed_trips
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from tests.cli import BIN, spawn
from tests.conftest import free_port, stop, wait_for_http

CONFIGS = Path(__file__).parents[2] / "training" / "configs"


@dataclass(frozen=True)
class Platform:
    """A running serving platform and how to reach it."""

    url: str
    port: int
    env: dict[str, str]
    model: str
    process: subprocess.Popen[bytes]


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


def train(home: Path, tracking_uri: str, model: str, config: str, *extra: str) -> dict[str, Any]:
    """Run `lakeserve train` as a real process; return its JSON summary."""
    import json

    env = clean_env(LAKESERVE_HOME=str(home), MLFLOW_TRACKING_URI=tracking_uri)
    result = spawn(
        "train", "--config", str(CONFIGS / config), "--model-name", model, "--json", *extra, env=env
    )
    assert result.code == 0, result.err
    return dict(json.loads(result.out))


def write_serve_config(path: Path, model: str, rag: bool = False, **args: Any) -> Path:
    """Write a Serve config hosting `model` on one fixed replica (deterministic metrics).

    `rag` also deploys the RagServer (one replica) behind the same ingress.
    """
    config = {
        "proxy_location": "EveryNode",
        "http_options": {"host": "127.0.0.1", "port": 8000},
        "applications": [
            {
                "name": "models",
                "route_prefix": "/",
                "import_path": "lakeserve.deployment:build_app",
                "args": {"models": [{"name": model, "alias": "champion"}], "rag": rag, **args},
                "deployments": [
                    {
                        "name": "ModelServer",
                        "num_replicas": 1,
                        "max_ongoing_requests": 128,
                        "graceful_shutdown_timeout_s": 2,
                        "ray_actor_options": {"num_cpus": 0.5},
                    }
                ],
            }
        ],
    }
    if rag:
        config["applications"][0]["deployments"].append(
            {
                "name": "RagServer",
                "num_replicas": 1,
                "max_ongoing_requests": 8,
                "graceful_shutdown_timeout_s": 2,
                "ray_actor_options": {"num_cpus": 0.5},
            }
        )
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
        **env,
    )
    return port, ray_dir, environment


def run_platform(
    home: Path, tracking_uri: str, model: str, config: Path, **env: str
) -> Iterator[Platform]:
    """Start `lakeserve serve`, wait until ready, yield it, stop it by PID."""
    port, ray_dir, environment = serve_env(home, tracking_uri, config, **env)
    log = (home / f"serve-{port}.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "lakeserve"), "serve", "--ready-timeout", "240"],
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/v2/health/ready", process, timeout_s=300)
        yield Platform(url, port, environment, model, process)
    finally:
        stop(process, grace_s=60, marker=ray_dir)
        log.close()
