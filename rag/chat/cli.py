"""`lakeserve chat`: run the chat page (Streamlit) in the foreground."""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from kernel.console import err
from kernel.errors import ConfigError
from rag.chat.settings import ChatSettings

APP = Path(__file__).with_name("app.py")


def streamlit_args(settings: ChatSettings) -> list[str]:
    """Return the `streamlit run` command: offline, no telemetry, bound to our address.

    It goes through our launcher (`python -m rag.chat`), which serves the metrics first.
    """
    return [
        sys.executable, "-m", "rag.chat", "run", str(APP),
        "--server.address", settings.chat_host,
        "--server.port", str(settings.chat_port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--server.runOnSave", "false",
        "--browser.gatherUsageStats", "false",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "minimal",
        "--client.showErrorDetails", "false",
        "--theme.base", "light",
        "--theme.primaryColor", "#2563eb",
    ]  # fmt: skip


def _check_free(host: str, port: int) -> None:
    if not port:
        return
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ConfigError(
                f"cannot listen on {host}:{port} ({reason}): set LAKESERVE_CHAT_PORT or --port"
            ) from exc


def chat_command(
    port: Annotated[
        int | None, typer.Option(help="Port (default: LAKESERVE_CHAT_PORT, 8501).", min=1)
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (default: LAKESERVE_CHAT_HOST).")
    ] = None,
) -> None:
    """Start the chat web page on 127.0.0.1; it asks the API at LAKESERVE_API_URL."""
    overrides: dict[str, Any] = {"chat_port": port, "chat_host": host}
    settings = ChatSettings(**{k: v for k, v in overrides.items() if v is not None})
    _check_free(settings.chat_host, settings.chat_port)
    _check_free(settings.chat_host, settings.chat_metrics_port)
    environment = {
        **os.environ,
        "LAKESERVE_CHAT_HOST": settings.chat_host,
        "LAKESERVE_CHAT_PORT": str(settings.chat_port),
        "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
    }
    err.print(
        f"chat page on http://{settings.chat_host}:{settings.chat_port} "
        f"(API {settings.api_url}, metrics on port {settings.chat_metrics_port or 'off'})",
        soft_wrap=True,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    # Streamlit replaces this process: signals and the PID reach the server directly.
    os.execve(sys.executable, streamlit_args(settings), environment)
