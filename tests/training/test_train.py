"""`lakeserve train` against a real MLflow server and real Delta tables."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from lakehouse.seed import GOLD, seed_trips
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakehouse.trips.features import FEATURES
from tests.utils.cli import Result, invoke, spawn
from training import data
from training.config import load_config

pytestmark = pytest.mark.integration
CONFIGS = Path(__file__).parents[2] / "training" / "configs"
RIDGE, HGB = str(CONFIGS / "fare-ridge.yaml"), str(CONFIGS / "fare-hgb.yaml")
# Keep the boosted model quick; it still beats ridge by a wide margin on this data.
FAST = ["--set", "model.params.max_iter=60"]


@pytest.fixture(scope="module")
def seeded_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lakehouse whose gold table has two versions (seed 1, then seed 2)."""
    home = tmp_path_factory.mktemp("train-home")
    lake = Lakehouse(LakehouseSettings(home=home))
    seed_trips(lake, 6_000, seed=1)
    seed_trips(lake, 9_000, seed=2)
    return home


@pytest.fixture
def env(
    seeded_home: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MlflowClient]:
    for name in list(os.environ):
        if name.startswith("LAKESERVE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LAKESERVE_HOME", str(seeded_home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    yield MlflowClient(mlflow_server, mlflow_server)


def train(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[Result, dict[str, Any]]:
    result = invoke(capsys, "train", "--json", *args)
    assert result.code == 0, result.err
    return result, json.loads(result.out)


def test_first_model_is_registered_with_signature_lineage_and_plots(
    env: MlflowClient, capsys: pytest.CaptureFixture[str], seeded_home: Path
) -> None:
    _, out = train(capsys, "--config", RIDGE, "--model-name", "fare-first")
    assert out["alias"] == "champion" and out["promoted"] is True
    assert out["version"] == "1"
    assert out["data"] == {"table": "gold.trips", "version": 1, "rows": out["data"]["rows"]}

    version = env.get_model_version_by_alias("fare-first", "champion")
    assert version.version == "1"
    assert version.tags["data.version"] == "1"
    assert version.tags["promotion.decision"] == "champion"

    info = mlflow.models.get_model_info("models:/fare-first@champion")
    assert info.signature.inputs.input_names() == FEATURES
    assert info.saved_input_example_info is not None

    run = env.get_run(str(out["run_id"]))
    assert run.data.params["data.version"] == "1"
    assert run.data.params["model.type"] == "ridge"
    assert run.data.params["data.table"] == "gold.trips"
    assert run.inputs is not None
    inputs = {i.tags[0].value: json.loads(i.dataset.source) for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "holdout"}
    assert inputs["training"]["delta_table_version"] == 1
    assert inputs["training"]["path"].endswith("/lake/gold/trips")
    plots = {a.path for a in env.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/residuals.png", "plots/permutation_importance.png"}

    # The registered model reproduces the logged holdout metric on the same rows.
    lake = Lakehouse(LakehouseSettings(home=seeded_home))
    config = load_config(Path(RIDGE))
    _, holdout = data.split(
        data.load(lake, config.data).frame, "trip_id", 0.2, config.data.split_salt
    )
    model = mlflow.pyfunc.load_model("models:/fare-first@champion")
    predicted = np.asarray(model.predict(holdout[FEATURES]))
    rmse = float(np.sqrt(np.mean((holdout["fare_amount"].to_numpy() - predicted) ** 2)))
    assert rmse == pytest.approx(run.data.metrics["rmse"], rel=1e-9)


def test_gate_promotes_a_better_model_and_refuses_a_worse_one(
    env: MlflowClient, capsys: pytest.CaptureFixture[str]
) -> None:
    name = ["--model-name", "fare-gate"]
    _, ridge = train(capsys, "--config", RIDGE, *name)
    _, boosted = train(capsys, "--config", HGB, *name, *FAST)
    assert boosted["alias"] == "champion", boosted["reason"]
    assert "beats champion" in str(boosted["reason"])
    assert boosted["metrics"]["rmse"] < ridge["metrics"]["rmse"]

    _, worse = train(capsys, "--config", RIDGE, *name)
    assert worse["alias"] == "challenger"
    assert worse["promoted"] is False
    assert env.get_model_version_by_alias("fare-gate", "champion").version == "2"
    assert env.get_model_version_by_alias("fare-gate", "challenger").version == "3"
    run = env.get_run(str(worse["run_id"]))
    assert run.data.tags["promotion.decision"] == "challenger"
    assert "does not beat champion" in run.data.tags["promotion.reason"]
    assert run.data.metrics["champion_rmse"] == pytest.approx(boosted["metrics"]["rmse"])


def test_a_pinned_table_version_is_read_and_recorded(
    env: MlflowClient, capsys: pytest.CaptureFixture[str], seeded_home: Path
) -> None:
    _, out = train(capsys, "--config", RIDGE, "--model-name", "fare-pinned", "--table-version", "0")
    lake = Lakehouse(LakehouseSettings(home=seeded_home))
    assert out["data"]["version"] == 0
    rows_v0 = lake.read(GOLD, 0).num_rows
    assert out["data"]["rows"] == rows_v0
    assert env.get_run(str(out["run_id"])).data.params["data.version"] == "0"


def test_python_dash_m_training_is_the_same_entrypoint(
    env: MlflowClient, seeded_home: Path, mlflow_server: str
) -> None:
    environment = {
        **os.environ,
        "LAKESERVE_HOME": str(seeded_home),
        "MLFLOW_TRACKING_URI": mlflow_server,
    }
    args = ("--config", RIDGE, "--model-name", "fare-module", "--json")
    result = spawn(*args, env=environment, module=True)
    assert result.code == 0, result.err
    assert json.loads(result.out)["version"] == "1"
    assert env.get_model_version_by_alias("fare-module", "champion").version == "1"
