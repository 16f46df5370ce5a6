"""Debian's Prometheus and Pushgateway on 127.0.0.1 for the tests, stopped by PID.

`make test` installs them (apt, the `prometheus` and `prometheus-pushgateway` packages); a
missing binary fails the test with that instruction, it is never a skip.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.utils.processes import free_port, start_server

PROMETHEUS = "prometheus"
PUSHGATEWAY = "prometheus-pushgateway"


def binary(name: str) -> str:
    """Return the path of a Debian monitoring binary, or fail saying how to get it."""
    path = shutil.which(name)
    assert path, f"{name} is missing: `make prometheus` installs Debian's prometheus packages"
    return path


def run_pushgateway(root: Path) -> Iterator[str]:
    """A Pushgateway on a free loopback port; yields its URL."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [binary(PUSHGATEWAY), f"--web.listen-address=127.0.0.1:{port}"]
    yield from (url for _ in start_server(command, f"{url}/-/healthy", root / "pushgateway.log"))


def run_prometheus(root: Path, config: dict[str, Any], rules: list[Path]) -> Iterator[str]:
    """Prometheus with `config` (rule_files set to `rules`) on a free loopback port."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    path = root / "prometheus.yml"
    path.write_text(yaml.safe_dump({**config, "rule_files": [str(r) for r in rules]}))
    command = [
        binary(PROMETHEUS),
        f"--config.file={path}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    yield from (url for _ in start_server(command, f"{url}/-/ready", root / "prometheus.log"))


def query(url: str, expr: str) -> list[dict[str, Any]]:
    """Return an instant query's result vector (or [] for no data); fail on a query error."""
    response = httpx.get(f"{url}/api/v1/query", params={"query": expr}, timeout=30)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    result = body["data"]["result"]
    if body["data"]["resultType"] == "scalar":
        return [{"metric": {}, "value": result}]
    return list(result)


def wait_for(url: str, expr: str, timeout_s: float = 90) -> list[dict[str, Any]]:
    """Poll an instant query until it returns data; return it (or [] at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = query(url, expr)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(1)
