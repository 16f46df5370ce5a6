"""Two local servers on one machine stay apart: their own ports, or a clear refusal."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from kernel.errors import ConfigError
from serving import runner
from serving.settings import ServingSettings
from tests.utils.cli import spawn
from tests.utils.platform import clean_env

# Ports Serve would otherwise bind at fixed numbers on every local server.
PER_SERVER_PORTS = (
    "RAY_SERVE_HAPROXY_STATS_PORT",
    "RAY_SERVE_HAPROXY_METRICS_PORT",
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
    "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT",
)


@pytest.fixture
def listening() -> Iterator[int]:
    """A port held the way Serve's proxies hold theirs (SO_REUSEPORT, listening)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def settings(tmp_path: Path, port: int) -> ServingSettings:
    # HAProxy's socket path limit: Ray's session files need a short directory.
    return ServingSettings(http_port=port, ray_tmpdir=Path(f"/tmp/lsr-u{os.getpid()}"))


def test_two_local_servers_get_distinct_proxy_ports(tmp_path: Path) -> None:
    first = runner.ray_environment(settings(tmp_path, 8000))
    second = runner.ray_environment(settings(tmp_path, 8001))
    ports = [env[name] for env in (first, second) for name in PER_SERVER_PORTS]
    assert len(set(ports)) == len(ports), ports
    assert first["RAY_SERVE_HAPROXY_SOCKET_PATH"] != second["RAY_SERVE_HAPROXY_SOCKET_PATH"]


def test_a_port_in_use_is_refused_before_ray_starts(tmp_path: Path, listening: int) -> None:
    with pytest.raises(ConfigError, match=f"127.0.0.1:{listening} is already in use"):
        runner.start(settings(tmp_path, listening))


def test_serve_on_a_taken_port_exits_2_with_the_port(tmp_path: Path, listening: int) -> None:
    env = clean_env(
        LAKESERVE_HOME=str(tmp_path),
        LAKESERVE_HTTP_PORT=str(listening),
        LAKESERVE_RAY_TMPDIR=f"/tmp/lsr-c{os.getpid()}",
    )
    result = spawn("serve", "--once", env=env)
    assert result.code == 2, result.err
    assert f"127.0.0.1:{listening} is already in use" in result.err
    assert "LAKESERVE_HTTP_PORT" in result.err
    assert "Traceback" not in result.err
