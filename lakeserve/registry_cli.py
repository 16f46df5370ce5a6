"""`lakeserve registry`: the MLflow server's identities and its metrics, for the cluster.

`users` runs as a Job against `mlflow server --app-name basic-auth` with the administrator's
credentials (MLFLOW_TRACKING_USERNAME/PASSWORD): every named user exists afterwards with the
password from its environment variable, created or rotated, so the Job is re-run to rotate.
`metrics` serves the server's Prometheus metrics (its multiprocess directory) on a port of its
own, so Prometheus scrapes them without credentials and without reaching the tracking API.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Annotated

import typer

from kernel.console import err, out
from kernel.errors import ConfigError, LakeserveError, TrackingUnavailable
from kernel.settings import TrackingSettings

app = typer.Typer(
    help="The MLflow server's users (basic-auth) and its metrics exporter.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
_NAME = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def password_variable(user: str) -> str:
    """The environment variable holding `user`'s password: LAKESERVE_REGISTRY_PASSWORD_<USER>."""
    return "LAKESERVE_REGISTRY_PASSWORD_" + user.upper().replace("-", "_")


@app.command("users")
def users_command(
    names: Annotated[list[str], typer.Argument(help="User names (lowercase, digits, '-').")],
) -> None:
    """Create each user, or set its password if it exists (rotation); never an administrator.

    Exit codes: 2 a bad name, a missing password or refused administrator credentials,
    4 the tracking server is unreachable.
    """
    from mlflow.exceptions import RestException
    from mlflow.server import get_app_client
    from requests.exceptions import ConnectionError as RequestsConnectionError

    passwords: dict[str, str] = {}
    for name in names:
        if not _NAME.match(name):
            raise ConfigError(f"user name {name!r}: use lowercase letters, digits and '-'")
        password = os.environ.get(password_variable(name), "")
        if len(password) < 12:
            raise ConfigError(f"{password_variable(name)} must hold {name}'s password (12+ chars)")
        passwords[name] = password
    if not os.environ.get("MLFLOW_TRACKING_USERNAME"):
        raise ConfigError("MLFLOW_TRACKING_USERNAME/PASSWORD must be the MLflow administrator's")
    uri = TrackingSettings().uri
    client = get_app_client("basic-auth", tracking_uri=uri)
    for name, password in passwords.items():
        try:
            try:
                client.create_user(name, password)
                action = "created"
            except RestException as exc:
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                client.update_user_password(name, password)
                client.update_user_admin(name, False)
                action = "password set"
        except RequestsConnectionError as exc:
            raise TrackingUnavailable(f"MLflow server {uri} is unreachable: {exc}") from exc
        except RestException as exc:
            raise LakeserveError(f"user {name}: {exc.message}") from exc
        except Exception as exc:  # the client raises plain HTTP errors for 401/403
            if "401" in str(exc) or "403" in str(exc):
                raise ConfigError(f"{uri} refused the administrator credentials: {exc}") from exc
            raise
        out.print(f"{name}: {action}")


@app.command("metrics")
def metrics_command(
    directory: Annotated[
        Path, typer.Option("--dir", help="The server's --expose-prometheus directory.")
    ],
    port: Annotated[int, typer.Option(help="Port to serve /metrics on.", min=1, max=65535)] = 9090,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 in a pod).")] = "127.0.0.1",
) -> None:
    """Serve the MLflow server's Prometheus metrics until stopped (a sidecar)."""
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    directory.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from exc
    err.print(f"MLflow metrics from {directory} on http://{host}:{port}/metrics")
    threading.Event().wait()
