"""Lakeserve's loop as one Airflow DAG; every task is one `lakeserve` command.

    refresh_trips    -> train   -> promoted         -> serving_updated
    refresh_docs     -> ingest  -> rag_gate
    refresh_requests -> monitor -> retrain -> retrain_promoted -> retrain_serving_updated
    train            -> monitor

The monitor waits for the day's training: on a first run that training makes the champion the
monitor needs, and two trainings never race for the alias (retrain follows train).

Gates are exit codes of the commands (kernel/errors.py): `lakeserve models gate` exits 9 when
the run's candidate was not promoted, and the task ends *skipped* (the champion stays, nothing
to wait for); `lakeserve monitor --retrain-gate` exits 9 when no threshold was crossed, so
retraining is skipped; `lakeserve rag eval --min-recall` exits 9 below the floor and the task
*fails* (the index needs a look). Every other non-zero exit fails its task.

Where the commands run (LAKESERVE_AIRFLOW_MODE):
- `local` (default): a BashOperator runs LAKESERVE_BIN (default `lakeserve` on PATH) with the
  worker's environment, in LAKESERVE_LOOP_CWD (default: the repository this file is in, so
  relative paths and the default LAKESERVE_HOME are the ones `make demo` uses).
- `kubernetes`: a KubernetesPodOperator starts a pod of LAKESERVE_IMAGE in
  LAKESERVE_JOBS_NAMESPACE as LAKESERVE_JOBS_SERVICE_ACCOUNT, set up like the CronJobs of
  k8s/base/jobs: the lakeserve-config ConfigMap, the trainer's MLflow identity and S3 keys,
  a restricted securityContext and a read-only root.

This file imports Airflow and the standard library only: it runs in Airflow's own environment
(`make airflow`, or the official image in the Helm chart of k8s/airflow), never beside the
project's packages.
"""

from __future__ import annotations

import os
import shlex
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Param

MODE = os.environ.get("LAKESERVE_AIRFLOW_MODE", "local")
if MODE not in {"local", "kubernetes"}:
    raise ValueError(f"LAKESERVE_AIRFLOW_MODE must be 'local' or 'kubernetes', got {MODE!r}")
LAKESERVE_BIN = os.environ.get("LAKESERVE_BIN", "lakeserve")
IMAGE = os.environ.get("LAKESERVE_IMAGE", "ghcr.io/lakeserve/lakeserve:0.1.0")
NAMESPACE = os.environ.get("LAKESERVE_JOBS_NAMESPACE", "lakeserve-jobs")
SERVICE_ACCOUNT = os.environ.get("LAKESERVE_JOBS_SERVICE_ACCOUNT", "lakeserve-train")
SERVING_URL = os.environ.get(
    "LAKESERVE_SERVING_URL",
    "http://127.0.0.1:8000"
    if MODE == "local"
    else "http://lakeserve-serve-svc.lakeserve-serving.svc:8000",
)
NOT_PASSED = 9  # GateFailed: a gate that did not pass
CWD = os.environ.get("LAKESERVE_LOOP_CWD", str(Path(__file__).resolve().parents[1]))
# Values of run parameters end up in commands: plain words, paths and numbers only.
WORD = r"^[A-Za-z0-9/][A-Za-z0-9._/@:-]*$"

PARAMS = {
    "model": Param("fare-regressor", type="string", pattern=WORD, description="Registered model."),
    "config": Param(
        "training/configs/fare-hgb.yaml",
        type="string",
        pattern=WORD,
        description="Training config (a path in the image, or relative to the worker's cwd).",
    ),
    "scale": Param(
        100_000, type="integer", minimum=1_000, maximum=50_000_000, description="Trips in the feed."
    ),
    "seed": Param(42, type="integer", minimum=0, description="Seed of the trip feed."),
    "doc_modules": Param(
        "",
        type="string",
        pattern=r"^[A-Za-z0-9._,]*$",
        description="Document corpus: these stdlib modules, comma-separated (empty: all).",
    ),
    "window": Param("24h", type="string", pattern=r"^\d+[mhd]$", description="Monitor window."),
    "min_recall": Param(
        0.8, type="number", minimum=0, maximum=1, description="RAG gate: hybrid recall@5 floor."
    ),
    "qa": Param(
        "rag/qa/stdlib.jsonl", type="string", pattern=WORD, description="QA set of the RAG gate."
    ),
    "wait_s": Param(600, type="integer", minimum=1, description="How long serving may take."),
}
RUN = "loop-{{ run_id }}"
RETRAIN = "loop-retrain-{{ run_id }}"


def commands() -> dict[str, list[str]]:
    """The `lakeserve` arguments of every task (Jinja-templated by Airflow)."""
    model = ["--model", "{{ params.model }}"]
    seed = ["--scale", "{{ params.scale }}", "--seed", "{{ params.seed }}"]
    wait = ["models", "wait", *model, "--url", SERVING_URL, "--timeout", "{{ params.wait_s }}"]

    def train(run: str) -> list[str]:
        config = ["--config", "{{ params.config }}", "--model-name", "{{ params.model }}"]
        return ["train", *config, "--run-name", run, "--json"]

    return {
        "refresh_trips": ["lake", "seed", "--only", "trips", *seed],
        "train": train(RUN),
        "promoted": ["models", "gate", *model, "--run-name", RUN],
        "serving_updated": wait,
        "refresh_docs": ["lake", "seed", "--only", "docs", "--modules", "{{ params.doc_modules }}"],
        "ingest": ["rag", "ingest", "--executor", "local", "--json"],
        "rag_gate": [
            "rag",
            "eval",
            "--qa",
            "{{ params.qa }}",
            "--min-recall",
            "{{ params.min_recall }}",
            "--run-name",
            RUN,
        ],
        "refresh_requests": ["lake", "requests"],
        "monitor": ["monitor", *model, "--since", "{{ params.window }}", "--retrain-gate"],
        "retrain": train(RETRAIN),
        "retrain_promoted": ["models", "gate", *model, "--run-name", RETRAIN],
        "retrain_serving_updated": wait,
    }


CHAINS = (
    ("refresh_trips", "train", "promoted", "serving_updated"),
    ("refresh_docs", "ingest", "rag_gate"),
    ("refresh_requests", "monitor", "retrain", "retrain_promoted", "retrain_serving_updated"),
    ("train", "monitor"),
)
# Tasks whose gate exit (9) means "nothing to do downstream", not a failure.
SKIP_ON_GATE = {"promoted", "monitor", "retrain_promoted"}
# checkov's findings that do not apply to a run-to-completion pod, with the reason (the same
# as k8s/base's for the digest and the environment).
CHECKOV_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_8=A task pod runs to completion and serves nothing to probe.",
    "checkov.io/skip2": "CKV_K8S_9=A task pod runs to completion and serves nothing to probe.",
    "checkov.io/skip3": "CKV_K8S_43=Pin the digest in LAKESERVE_IMAGE (image@sha256:...) at "
    "deploy time; the registry digest is not known in this repository.",
    "checkov.io/skip4": "CKV_K8S_35=Settings, secrets included, are read from the environment "
    "(pydantic-settings), as in the CronJobs.",
}
# What a pod may use; training and ingestion as in the CronJobs, the rest is light.
HEAVY = {"train", "retrain", "ingest", "refresh_trips", "refresh_docs"}


def _local(task_id: str, args: list[str], skip: list[int]) -> Any:
    from airflow.providers.standard.operators.bash import BashOperator

    # Quoted as a whole; Jinja renders inside the quotes (parameters match WORD: no quotes).
    return BashOperator(
        task_id=task_id,
        bash_command=shlex.join([LAKESERVE_BIN, *args]),
        cwd=CWD,
        skip_on_exit_code=skip or None,
    )


def _pod(task_id: str, args: list[str], skip: list[int]) -> Any:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s

    def secret(variable: str, name: str) -> k8s.V1EnvVar:
        ref = k8s.V1SecretKeySelector(name=name, key=variable)
        return k8s.V1EnvVar(name=variable, value_from=k8s.V1EnvVarSource(secret_key_ref=ref))

    size = ("2", "4Gi") if task_id in HEAVY else ("500m", "1Gi")
    env = [
        k8s.V1EnvVar(name="HOME", value="/tmp"),
        secret("LAKESERVE_S3_ACCESS_KEY_ID", "lakeserve-s3"),
        secret("LAKESERVE_S3_SECRET_ACCESS_KEY", "lakeserve-s3"),
    ]
    if task_id.endswith("serving_updated"):
        # One of the clients' keys (lakeserve-api-keys in lakeserve-serving), for GET /models.
        env.append(secret("LAKESERVE_API_KEY", "lakeserve-loop-key"))
    return KubernetesPodOperator(
        task_id=task_id,
        name=f"loop-{task_id.replace('_', '-')}",
        namespace=NAMESPACE,
        image=IMAGE,
        image_pull_policy=os.environ.get("LAKESERVE_IMAGE_PULL_POLICY", "Always"),
        arguments=args,
        labels={
            "app.kubernetes.io/name": "lakeserve-loop",
            "app.kubernetes.io/part-of": "lakeserve",
            "lakeserve.dev/task": task_id.replace("_", "-"),
        },
        annotations=CHECKOV_SKIPS,
        service_account_name=SERVICE_ACCOUNT,
        automount_service_account_token=False,
        env_from=[
            k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name="lakeserve-config")),
            k8s.V1EnvFromSource(secret_ref=k8s.V1SecretEnvSource(name="mlflow-trainer")),
        ],
        env_vars=env,
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": size[0], "memory": size[1]}, limits={"cpu": size[0], "memory": size[1]}
        ),
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=10001,
            run_as_group=10001,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
        volumes=[
            k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource()),
            k8s.V1Volume(name="data", empty_dir=k8s.V1EmptyDirVolumeSource()),
        ],
        volume_mounts=[
            k8s.V1VolumeMount(name="tmp", mount_path="/tmp"),
            k8s.V1VolumeMount(name="data", mount_path="/data"),
        ],
        # The container's log streams into the task's log; a gate's "no" (exit 9) ends the pod
        # Failed, and keeping those would pile up a Failed pod on every healthy day.
        get_logs=True,
        on_finish_action="delete_pod",
        startup_timeout_seconds=600,
        skip_on_exit_code=skip or None,
    )


with DAG(
    dag_id="lakeserve_loop",
    description="Refresh, train, gate, roll out; ingest and gate RAG; monitor and retrain.",
    schedule=os.environ.get("LAKESERVE_LOOP_SCHEDULE", "@daily"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    params=PARAMS,
    default_args={
        "retries": int(os.environ.get("LAKESERVE_LOOP_RETRIES", "1")),
        "retry_delay": timedelta(minutes=2),
        # A hung task must not hold the next runs (max_active_runs=1).
        "execution_timeout": timedelta(hours=2),
    },
    tags=["lakeserve"],
    doc_md=__doc__,
) as dag:
    make = _local if MODE == "local" else _pod
    tasks = {
        task_id: make(task_id, args, [NOT_PASSED] if task_id in SKIP_ON_GATE else [])
        for task_id, args in commands().items()
    }
    for chain in CHAINS:
        for upstream, downstream in pairwise(chain):
            tasks[upstream] >> tasks[downstream]
