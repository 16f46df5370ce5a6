"""Each documented exit code of `lakeserve train`, triggered by real bad input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lakehouse.seed import seed_trips
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from tests.utils.cli import invoke, spawn
from tests.utils.processes import free_port

pytestmark = pytest.mark.integration
RIDGE = str(Path(__file__).parents[2] / "training" / "configs" / "fare-ridge.yaml")


@pytest.fixture(scope="module")
def seeded_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("exit-home")
    seed_trips(Lakehouse(LakehouseSettings(home=home)), 3_000, seed=1)
    return home


@pytest.fixture
def seeded_env(
    seeded_home: Path, mlflow_server: str, lake_env: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    monkeypatch.setenv("LAKESERVE_HOME", str(seeded_home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    return seeded_home


def only_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "model.type=xgboost"], "model.type: Input should be"),
        (["--set", "model.params.alpha=-3"], "model.params for ridge: The 'alpha' parameter"),
        (["--set", "data.holdout_fraction=1.5"], "data.holdout_fraction: Input should be less"),
        (["--set", "data.table=platinum.trips"], "invalid table 'platinum.trips'"),
    ],
)
def test_bad_config_exits_2(
    seeded_env: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    result = invoke(capsys, "train", "--config", RIDGE, *args)
    assert result.code == 2
    assert message in only_line(result.err)


def test_missing_config_file_exits_2(seeded_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(capsys, "train", "--config", "no-such.yaml")
    assert result.code == 2
    assert only_line(result.err) == "error: config file no-such.yaml not found"


def test_missing_config_option_exits_2_with_usage(lake_env: Path) -> None:
    result = spawn("train", "--model-name", "x")
    assert result.code == 2
    assert "Invalid value for '--config': a training config file is required" in result.err
    assert "Traceback" not in result.err


def test_unknown_option_exits_2(lake_env: Path) -> None:
    result = spawn("train", "--config", RIDGE, "--colour", "red")
    assert result.code == 2
    assert "No such option: --colour" in result.err


def test_missing_table_exits_3(
    lake_env: Path,
    mlflow_server: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    result = invoke(capsys, "train", "--config", RIDGE)
    assert result.code == 3
    assert only_line(result.err).startswith("error: table gold.trips not found at ")


def test_schema_mismatch_exits_3(seeded_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(
        capsys, "train", "--config", RIDGE, "--set", "data.features=[trip_distance, tolls]",
        "--set", "data.calendar=[]",
    )  # fmt: skip
    assert result.code == 3
    assert "error: table gold.trips@0 lacks column(s) tolls; it has trip_id" in only_line(
        result.err
    )


def test_unknown_table_version_exits_3(
    seeded_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = invoke(capsys, "train", "--config", RIDGE, "--table-version", "42")
    assert result.code == 3
    assert only_line(result.err) == "error: table gold.trips has no version 42"


def test_unreachable_tracking_server_exits_4(
    seeded_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    result = invoke(capsys, "train", "--config", RIDGE)
    assert result.code == 4
    assert only_line(result.err).startswith(f"error: MLflow tracking server {dead} is unreachable")


def test_unexpected_failure_exits_1_without_hiding_the_cause(
    lake_env: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LAKESERVE_") and k != "MLFLOW_TRACKING_URI"
    }
    result = spawn("train", "--config", RIDGE, env={**env, "LAKESERVE_HOME": str(blocker / "home")})
    assert result.code == 1
    assert "error: unexpected NotADirectoryError" in result.err
