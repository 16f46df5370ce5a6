"""Servers started by the tests on 127.0.0.1 and stopped by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

BIN = Path(sys.executable).parent


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, process: subprocess.Popen[bytes], timeout_s: float = 90.0) -> None:
    """Poll `url` until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s")


def stop(process: subprocess.Popen[bytes], grace_s: float = 20, marker: str | None = None) -> None:
    """SIGTERM the server's process group by its PID, then SIGKILL if it lingers.

    `marker` (e.g. a Ray temp dir unique to the server) also finds processes the server
    started in sessions of their own, such as a local Ray's raylet and workers.
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    if marker:
        for leftover in psutil.process_iter(["pid", "cmdline"]):
            if any(marker in part for part in leftover.info["cmdline"] or []):
                with contextlib.suppress(psutil.Error):
                    leftover.kill()


def start_server(
    command: list[str],
    health_url: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    timeout_s: float = 90.0,
    grace_s: float = 20,
    marker: str | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a server in its own process group; yield it once `health_url` answers 200.

    It is stopped by PID afterwards (see `stop` for `grace_s` and `marker`); if it never
    becomes healthy, the end of its log goes to stderr.
    """
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_http(health_url, process, timeout_s)
        except Exception:
            stop(process, grace_s, marker)
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
            raise
        try:
            yield process
        finally:
            stop(process, grace_s, marker)
