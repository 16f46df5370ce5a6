"""The Kubernetes training Jobs, executed here: their container's args and environment as written.

The pod's environment is built from the manifest the way the kubelet builds it: `envFrom` the
settings ConfigMap (k8s/base/settings.env with the dev overlay's values), `env` with Secret
references resolved, the config ConfigMap mounted as files. Only the addresses are local: moto
stands in for MinIO, a real `mlflow server` for the MLflow Service.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import boto3
import mlflow
import pytest
import yaml

from lakehouse.seed import seed_trips
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from tests.utils.processes import BIN

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
JOBS = ROOT / "k8s" / "jobs"


def env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def pod_environment(
    container: dict[str, Any], config: dict[str, str], secrets: dict[str, str]
) -> dict[str, str]:
    """Resolve envFrom/env like the kubelet; fail on a reference nothing provides."""
    env = {"PATH": os.environ["PATH"]}
    for source in container.get("envFrom", []):
        if "secretRef" in source:  # whole Secrets: the trainer's MLflow identity only
            assert source["secretRef"]["name"] == "mlflow-trainer"
            env.update(MLFLOW_TRACKING_USERNAME="trainer", MLFLOW_TRACKING_PASSWORD="unused")
            continue
        assert source["configMapRef"]["name"] == "lakeserve-config"
        env.update(config)
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["key"]]
    return env


@pytest.fixture(scope="module")
def cluster_like(s3_server: str, mlflow_server: str) -> dict[str, Any]:
    """A bucket with the gold tables, the settings a dev cluster would give the pod."""
    bucket = f"lakeserve-{uuid.uuid4().hex[:8]}"
    secrets = {"LAKESERVE_S3_ACCESS_KEY_ID": "test", "LAKESERVE_S3_SECRET_ACCESS_KEY": "test"}
    boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    config = {
        **env_file(ROOT / "k8s" / "base" / "settings.env"),
        **env_file(ROOT / "k8s" / "overlays" / "dev" / "dev.env"),
    }
    # Only the addresses differ from the cluster.
    config.update(
        LAKESERVE_LAKE_ROOT=f"s3://{bucket}/lake",
        LAKESERVE_S3_ENDPOINT_URL=s3_server,
        MLFLOW_TRACKING_URI=mlflow_server,
    )
    lake = Lakehouse(
        LakehouseSettings(
            lake_root=config["LAKESERVE_LAKE_ROOT"],
            s3_endpoint_url=s3_server,
            s3_access_key_id="test",
            s3_secret_access_key="test",
            s3_allow_http=True,
        )
    )
    seed_trips(lake, 3_000, seed=7, rows_per_batch=3_000)
    return {"config": config, "secrets": secrets}


def run_job(path: Path, cluster_like: dict[str, Any], tmp_path: Path, **extra: str) -> Any:
    config_map, job = yaml.safe_load_all(path.read_text())
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    mounts = {}
    for volume in pod["volumes"]:
        if "configMap" in volume:
            assert volume["configMap"]["name"] == config_map["metadata"]["name"]
            files = tmp_path / volume["name"]
            files.mkdir()
            for name, text in config_map["data"].items():
                (files / name).write_text(text)
            mounts[volume["name"]] = files
    args = list(container["args"])
    for mount in container["volumeMounts"]:
        if mount["name"] in mounts:
            args = [a.replace(mount["mountPath"], str(mounts[mount["name"]])) for a in args]
    env = pod_environment(container, cluster_like["config"], cluster_like["secrets"])
    env.update(HOME=str(tmp_path), LAKESERVE_HOME=str(tmp_path / ".lakeserve"), **extra)
    # The image's ENTRYPOINT is `lakeserve`; the Job gives its arguments.
    done = subprocess.run(
        [str(BIN / "lakeserve"), *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_training_job_trains_and_registers(
    cluster_like: dict[str, Any], tmp_path: Path, mlflow_server: str
) -> None:
    result = run_job(JOBS / "train-job.yaml", cluster_like, tmp_path)
    assert result["model"] == "fare-regressor" and result["data"]["table"] == "gold.trips"
    assert result["tracking_uri"] == mlflow_server
    client = mlflow.MlflowClient(mlflow_server)
    version = client.get_model_version("fare-regressor", result["version"])
    assert version.run_id == result["run_id"]
    assert client.get_run(result["run_id"]).info.run_name == "train-fare-hgb"


def test_sweep_job_index_selects_its_parameters(
    cluster_like: dict[str, Any], tmp_path: Path, mlflow_server: str
) -> None:
    # Kubernetes sets JOB_COMPLETION_INDEX in each pod of an Indexed Job.
    result = run_job(JOBS / "train-sweep.yaml", cluster_like, tmp_path, JOB_COMPLETION_INDEX="1")
    params = mlflow.MlflowClient(mlflow_server).get_run(result["run_id"]).data.params
    sweep = yaml.safe_load(
        next(yaml.safe_load_all((JOBS / "train-sweep.yaml").read_text()))["data"]["sweep.yaml"]
    )
    assert sweep[1] == {"model.params.learning_rate": 0.08, "model.params.max_leaf_nodes": 63}
    assert params["model.params.learning_rate"] == "0.08"
    assert params["model.params.max_leaf_nodes"] == "63"
    assert result["alias"] in ("champion", "challenger")
