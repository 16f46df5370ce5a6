"""The registry with authentication, set up as the cluster sets it up.

A real `mlflow server --app-name basic-auth` (default permission READ, the administrator from
MLFLOW_AUTH_ADMIN_* as the Secret provides it, metrics in a multiprocess directory). The users
Job's command (`lakeserve registry users`) creates the trainer and serving identities and
rotates passwords; `lakeserve train` registers and promotes as the trainer; serving's registry
client follows and loads the version as `serving` (digest and gate checked) and is refused
(403) registering a version or moving the alias; `lakeserve registry metrics` exposes the
server's metrics on a port of their own without credentials, while the API's /metrics wants them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException, RestException

from lakehouse.seed import seed_trips
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from serving.model import MlflowRegistry
from tests.utils.cli import Result, spawn
from tests.utils.platform import clean_env, train
from tests.utils.processes import BIN, free_port, start_server

pytestmark = pytest.mark.integration
ADMIN = ("admin", "admin-password-for-tests")
PASSWORDS = {"trainer": "trainer-password-for-tests", "serving": "serving-password-for-tests"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(URL, metrics directory) of an authenticating MLflow server."""
    root = tmp_path_factory.mktemp("mlflow-auth")
    config = root / "auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(BIN / "mlflow"), "server", "--app-name", "basic-auth",
               "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
               "--artifacts-destination", str(root / "artifacts"),
               "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
               "--expose-prometheus", str(root / "metrics")]  # fmt: skip
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(config),
           "MLFLOW_AUTH_ADMIN_USERNAME": ADMIN[0], "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1],
           "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-static-secret-for-csrf-in-tests",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # fmt: skip
    for _ in start_server(command, f"{url}/health", root / "server.log", env=env, timeout_s=180):
        yield url, root / "metrics"


def users_job(
    uri: str, *names: str, admin: tuple[str, str] = ADMIN, passwords: dict[str, str] | None = None
) -> Result:
    """Run the users Job's command; `passwords` by user name."""
    env = clean_env(
        MLFLOW_TRACKING_URI=uri,
        MLFLOW_TRACKING_USERNAME=admin[0],
        MLFLOW_TRACKING_PASSWORD=admin[1],
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        **{f"LAKESERVE_REGISTRY_PASSWORD_{n.upper()}": p for n, p in (passwords or {}).items()},
    )
    return spawn("registry", "users", *names, env=env)


@pytest.fixture(scope="module")
def registry(server: tuple[str, Path]) -> str:
    """The server with the trainer and serving identities the users Job made."""
    uri = server[0]
    result = users_job(uri, "trainer", "serving", passwords=PASSWORDS)
    assert result.code == 0, result.err
    assert result.out.split() == ["trainer:", "created", "serving:", "created"]
    return uri


def identity(monkeypatch: pytest.MonkeyPatch, user: str, password: str | None = None) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password or PASSWORDS[user])
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")


def refused(call: Callable[[], object]) -> bool:
    try:
        call()
    except (RestException, MlflowException) as exc:
        return "403" in str(exc) or "PERMISSION_DENIED" in str(exc)
    return False


def test_trainer_promotes_serving_loads_but_cannot_register_or_move_the_alias(
    registry: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_trips(Lakehouse(LakehouseSettings(home=tmp_path)), 4_000, seed=3)
    identity(monkeypatch, "trainer")
    first = train(tmp_path, registry, "fare", "fare-ridge.yaml")
    assert first["version"] == "1" and first["promoted"] is True

    identity(monkeypatch, "serving")
    following = MlflowRegistry(registry)
    assert following.version_of("fare", "champion") == "1"
    assert following.load("fare", "1").version == "1"  # gate mark and digest read as serving
    serving = MlflowClient(registry, registry)
    source = "models:/fare/1"
    assert refused(lambda: serving.create_model_version("fare", source))
    assert refused(lambda: serving.set_registered_model_alias("fare", "champion", "1"))
    assert refused(lambda: serving.delete_registered_model_alias("fare", "champion"))
    assert refused(lambda: serving.set_model_version_tag("fare", "1", "promotion.decision", "x"))

    identity(monkeypatch, "trainer")  # the writer still can: the refusals were about identity
    trainer = MlflowClient(registry, registry)
    second = trainer.create_model_version("fare", source).version
    trainer.set_registered_model_alias("fare", "champion", second)
    identity(monkeypatch, "serving")
    assert following.version_of("fare", "champion") == str(second)

    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "wrong")
    with pytest.raises(MlflowException, match="401"):
        following.version_of("fare", "champion")


def test_users_job_rotates_a_password_and_refuses_bad_input(
    registry: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = "first-password-of-rotating", "second-password-of-rotating"
    assert users_job(registry, "rotating", passwords={"rotating": old}).out.split() == [
        "rotating:",
        "created",
    ]
    rerun = users_job(registry, "rotating", passwords={"rotating": new})
    assert rerun.code == 0 and rerun.out.split() == ["rotating:", "password", "set"]
    identity(monkeypatch, "rotating", old)
    with pytest.raises(MlflowException, match="401"):
        MlflowClient(registry, registry).search_registered_models()
    identity(monkeypatch, "rotating", new)
    assert [m.name for m in MlflowClient(registry, registry).search_registered_models()] == ["fare"]

    short = users_job(registry, "rotating", passwords={"rotating": "short"})
    assert short.code == 2 and "12+ chars" in short.err
    missing = users_job(registry, "nobody")
    assert missing.code == 2 and "LAKESERVE_REGISTRY_PASSWORD_NOBODY" in missing.err
    wrong_admin = users_job(
        registry, "rotating", admin=(ADMIN[0], "wrong"), passwords={"rotating": new}
    )
    assert wrong_admin.code == 2 and "refused the administrator" in wrong_admin.err
    assert "Traceback" not in short.err + missing.err + wrong_admin.err


def test_metrics_have_a_port_of_their_own_without_credentials(
    server: tuple[str, Path], registry: str, tmp_path: Path
) -> None:
    uri, directory = server
    assert httpx.get(f"{uri}/metrics", timeout=10).status_code == 401
    port = free_port()
    command = [str(BIN / "lakeserve"), "registry", "metrics", "--dir", str(directory),
               "--port", str(port)]  # fmt: skip
    url = f"http://127.0.0.1:{port}/metrics"
    for _ in start_server(command, url, tmp_path / "metrics.log", env=clean_env()):
        before = httpx.get(url, timeout=10).text
        for _ in range(3):  # answered by either worker: the sidecar sums every worker's files
            search = httpx.get(f"{uri}/api/2.0/mlflow/experiments/search?max_results=1",
                               auth=ADMIN, timeout=10)  # fmt: skip
            assert search.status_code == 200
        after = httpx.get(url, timeout=10).text
        assert "# TYPE mlflow_http_request_total counter" in after
        assert requests_ok(after) == requests_ok(before) + 3


def requests_ok(metrics: str) -> float:
    """Sum of mlflow_http_request_total over GET requests answered 200."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("mlflow_http_request_total{")
        and 'method="GET"' in line
        and 'status="200"' in line
    )
