"""The registry with authentication: training writes it, serving can only read it.

A real `mlflow server --app-name basic-auth` (default permission READ): the administrator
creates a trainer and a read-only serving identity; the trainer registers a version and
moves the alias; serving's own registry client follows the alias with its identity and is
refused (403) registering a version, moving or deleting the alias.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from serving.model import MlflowRegistry
from tests.utils.processes import BIN, free_port, start_server

pytestmark = pytest.mark.integration
ADMIN = ("admin", "admin-password-for-tests")
TRAINER = ("trainer", "trainer-password-for-tests")
SERVING = ("serving", "serving-password-for-tests")


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow-auth")
    config = root / "auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\n"
        f"admin_username = {ADMIN[0]}\n"
        f"admin_password = {ADMIN[1]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "mlflow"), "server", "--app-name", "basic-auth",
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
               "--artifacts-destination", str(root / "artifacts"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]  # fmt: skip
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(config),
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-static-secret-for-csrf-in-tests"}  # fmt: skip
    for _ in start_server(command, f"{url}/health", root / "server.log", env=env, timeout_s=180):
        yield url


def identity(monkeypatch: pytest.MonkeyPatch, user: tuple[str, str]) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", user[1])
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def refused(call: Callable[[], object]) -> bool:
    try:
        call()
    except (RestException, MlflowException) as exc:
        return "403" in str(exc) or "PERMISSION_DENIED" in str(exc)
    return False


def test_serving_follows_the_alias_but_cannot_move_it_or_register(
    registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.server.auth.client import AuthServiceClient

    identity(monkeypatch, ADMIN)
    users = AuthServiceClient(registry)
    for name, password in (TRAINER, SERVING):
        users.create_user(name, password)

    identity(monkeypatch, TRAINER)
    trainer = MlflowClient(registry, registry)
    trainer.create_registered_model("fare")
    first = trainer.create_model_version("fare", "s3://lakeserve/mlflow/1/model").version
    trainer.set_registered_model_alias("fare", "champion", first)

    identity(monkeypatch, SERVING)
    assert MlflowRegistry(registry).version_of("fare", "champion") == str(first)
    serving = MlflowClient(registry, registry)
    assert refused(lambda: serving.create_model_version("fare", "s3://attacker/model"))
    assert refused(lambda: serving.set_registered_model_alias("fare", "champion", first))
    assert refused(lambda: serving.delete_registered_model_alias("fare", "champion"))

    identity(monkeypatch, TRAINER)  # the writer still can: the refusals were about identity
    second = trainer.create_model_version("fare", "s3://lakeserve/mlflow/2/model").version
    trainer.set_registered_model_alias("fare", "champion", second)
    identity(monkeypatch, SERVING)
    assert MlflowRegistry(registry).version_of("fare", "champion") == str(second)

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
    with pytest.raises(MlflowException, match="401"):
        MlflowRegistry(registry).version_of("fare", "champion")
