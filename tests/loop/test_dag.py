"""Airflow's loop (dags/lakeserve_loop.py) in Airflow's own venv: the DAG imports, its graph is
the README's, its gates skip or fail what they should, the pods it would create validate
strictly, and dag.test() runs the whole loop on the embedded defaults beside a real serving."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from lakehouse.seed import seed_trips
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from tests.k8s import validate
from tests.utils.cli import spawn
from tests.utils.platform import (
    SMALL_MODULES,
    clean_env,
    run_platform,
    small_docs_home,
    train,
    write_serve_config,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
AIRFLOW_BIN = ROOT / ".venv-airflow" / "bin"
SIDE = Path(__file__).with_name("airflow_side.py")
README = ROOT / "README.md"
GATES = {"promoted", "monitor", "retrain_promoted"}
NAMESPACE = "lakeserve-jobs"
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "https://127.0.0.1:9"}}]
users: [{name: none, user: {token: none}}]
contexts: [{name: none, context: {cluster: none, user: none}}]
current-context: none
"""
# A stand-in for `lakeserve`: records its arguments, exits with the code of the first
# FAKE_EXITS prefix they start with (0 otherwise).
FAKE = """#!/usr/bin/env python3
import json, os, sys
args = " ".join(sys.argv[1:])
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(args + "\\n")
for prefix, code in json.loads(os.environ.get("FAKE_EXITS", "{}")).items():
    if args.startswith(prefix):
        sys.exit(code)
"""


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AIRFLOW_HOME with a migrated sqlite metadata DB (Airflow's venv: `make airflow`)."""
    if not (AIRFLOW_BIN / "airflow").exists():
        pytest.fail(f"{AIRFLOW_BIN}/airflow missing: run `make airflow` (make test does)")
    home = tmp_path_factory.mktemp("airflow")
    done = subprocess.run(
        [str(AIRFLOW_BIN / "airflow"), "db", "migrate"],
        env=_airflow_env(home), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return home


def _airflow_env(home: Path, base: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    return {
        **(base if base is not None else clean_env()),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "LAKESERVE_LOOP_RETRIES": "0",
        **extra,
    }


def side(command: str, *args: str, env: dict[str, str], timeout: float = 900) -> Any:
    """Run tests/loop/airflow_side.py in Airflow's venv; return the JSON of its last line."""
    done = subprocess.run(
        [str(AIRFLOW_BIN / "python"), str(SIDE), command, *args],
        env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-5000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def drawn_edges(text: str) -> set[tuple[str, str]]:
    """The edges of `a -> b -> c` lines (task ids only) in TEXT."""
    edges = set()
    for line in text.splitlines():
        if re.fullmatch(r"\s*[a-z_]+(\s*->\s*[a-z_]+)+\s*", line):
            names = [n.strip() for n in line.split("->")]
            edges |= set(itertools.pairwise(names))
    return edges


def test_dag_imports_and_its_graph_is_the_one_the_readme_draws(airflow_home: Path) -> None:
    graph = side("graph", env=_airflow_env(airflow_home))
    assert graph["import_errors"] == {}
    tasks = graph["tasks"]
    edges = {(up, down) for up, task in tasks.items() for down in task["downstream"]}
    readme = README.read_text().split("## The loop", 1)
    assert len(readme) == 2, "README has no '## The loop' section"
    assert drawn_edges(readme[1].split("\n## ", 1)[0]) == edges
    assert drawn_edges((ROOT / "dags" / "lakeserve_loop.py").read_text()) == edges
    assert {t: v["skip_on_exit_code"] for t, v in tasks.items()} == {
        t: [9] if t in GATES else [] for t in tasks
    }
    assert {v["trigger_rule"] for v in tasks.values()} == {"TriggerRule.ALL_SUCCESS"}
    for task_id, task in tasks.items():
        assert task["operator"] == "BashOperator"
        assert shlex.split(task["command"])[0] == "lakeserve", task_id


def test_a_bad_run_parameter_is_refused_before_anything_runs(airflow_home: Path) -> None:
    done = subprocess.run(
        [str(AIRFLOW_BIN / "python"), str(SIDE), "run", json.dumps({"model": "x; rm -rf /"})],
        env=_airflow_env(airflow_home), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode != 0
    assert "model" in done.stderr and "does not match" in done.stderr


@pytest.mark.parametrize(
    ("exits", "states", "run_state"),
    [
        pytest.param(
            {"rag eval": 9, "models gate --model fare-regressor --run-name loop-retrain": 9},
            {
                "rag_gate": "failed",
                "retrain_promoted": "skipped",
                "retrain_serving_updated": "skipped",
            },
            "failed",
            id="drift-retrain-not-promoted-rag-below-floor",
        ),
        pytest.param(
            {"models gate": 9, "monitor": 9},
            {
                "promoted": "skipped",
                "serving_updated": "skipped",
                "monitor": "skipped",
                "retrain": "skipped",
                "retrain_promoted": "skipped",
                "retrain_serving_updated": "skipped",
            },
            "success",
            id="not-promoted-no-drift",
        ),
        pytest.param(
            {"monitor": 4},
            {
                "monitor": "failed",
                "retrain": "upstream_failed",
                "retrain_promoted": "upstream_failed",
                "retrain_serving_updated": "upstream_failed",
            },
            "failed",
            id="monitor-broken",
        ),
    ],
)
def test_gates_skip_or_fail_what_they_should(
    airflow_home: Path,
    tmp_path: Path,
    exits: dict[str, int],
    states: dict[str, str],
    run_state: str,
) -> None:
    fake = tmp_path / "lakeserve"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    env = _airflow_env(
        airflow_home, LAKESERVE_BIN=str(fake), FAKE_LOG=str(log), FAKE_EXITS=json.dumps(exits)
    )
    result = side("run", "{}", env=env)
    graph = side("graph", env=env)["tasks"]
    assert result["tasks"] == {t: states.get(t, "success") for t in graph}
    assert result["run"] == run_state
    # What ran is what the graph says each task runs: every task that ran, none that did not.
    upstream = {down: up for up, task in graph.items() for down in task["downstream"]}

    def ran(task_id: str) -> bool:
        state = result["tasks"][task_id]
        gate_said_no = state == "skipped" and task_id in GATES
        return state in {"success", "failed"} or (
            gate_said_no and result["tasks"].get(upstream.get(task_id, ""), "success") == "success"
        )

    def plain(command: str) -> str:
        return re.sub(r"manual__\S+", "RUN", command)

    commands = [plain(" ".join(shlex.split(graph[t]["command"])[1:])) for t in graph if ran(t)]
    assert sorted(plain(line) for line in log.read_text().splitlines()) == sorted(commands)


def test_pods_run_the_local_commands_and_validate_strictly(
    airflow_home: Path, tmp_path: Path
) -> None:
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    env = _airflow_env(airflow_home, LAKESERVE_AIRFLOW_MODE="kubernetes")
    env["KUBECONFIG"] = str(tmp_path / "kubeconfig")
    rendered = side("pods", env=env)
    # The same commands locally, given the URL a pod defaults to (the one that differs).
    url = "http://lakeserve-serve-svc.lakeserve-serving.svc:8000"
    local = side("graph", env=_airflow_env(airflow_home, LAKESERVE_SERVING_URL=url))["tasks"]
    assert sorted(r["task_id"] for r in rendered) == sorted(local)
    pods = [r["pod"] for r in rendered]
    assert {r["task_id"]: r["skip_on_exit_code"] for r in rendered} == {
        t: v["skip_on_exit_code"] for t, v in local.items()
    }
    for task_id, pod in ((r["task_id"], r["pod"]) for r in rendered):
        [container] = pod["spec"]["containers"]
        # The same command in both modes: the image's entrypoint is `lakeserve`.
        assert container["args"] == shlex.split(local[task_id]["command"])[1:], task_id
        assert pod["metadata"]["namespace"] == NAMESPACE
        assert pod["spec"]["serviceAccountName"] == "lakeserve-train"
        assert pod["spec"]["automountServiceAccountToken"] is False
        assert pod["metadata"]["labels"]["app.kubernetes.io/name"] == "lakeserve-loop"
    problems = validate.errors(pods)
    assert problems == [], "\n".join(problems)
    # checkov beside the policies of the namespace the pods run in (it checks they apply).
    policies = [
        o for o in validate.render(validate.K8S / "base")
        if o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] == NAMESPACE
    ]  # fmt: skip
    assert {"default-deny", "loop-to-serving"} <= {p["metadata"]["name"] for p in policies}
    (tmp_path / "pods").mkdir()
    validate.write_objects([*pods, *policies], tmp_path / "pods")
    report = validate.checkov("-d", str(tmp_path / "pods"), "--framework", "kubernetes")
    assert report.failed == [], "\n".join(report.failed)
    assert report.passed > 0


def test_helm_values_and_rbac_match_what_the_dag_expects() -> None:
    values = yaml.safe_load((ROOT / "k8s" / "airflow" / "values.yaml").read_text())
    assert values["executor"] == "KubernetesExecutor"
    assert values["dags"]["gitSync"]["subPath"] == "dags"
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env["LAKESERVE_AIRFLOW_MODE"] == "kubernetes"
    assert env["LAKESERVE_JOBS_NAMESPACE"] == "lakeserve-jobs"
    objects = validate.render(validate.K8S / "base")
    accounts = {(o["metadata"]["namespace"], o["metadata"]["name"])
                for o in objects if o["kind"] == "ServiceAccount"}  # fmt: skip
    assert ("lakeserve-jobs", env["LAKESERVE_JOBS_SERVICE_ACCOUNT"]) in accounts
    [binding] = [
        o for o in objects
        if o["kind"] == "RoleBinding" and o["metadata"]["name"] == "airflow-pod-launcher"
    ]  # fmt: skip
    assert binding["metadata"]["namespace"] == env["LAKESERVE_JOBS_NAMESPACE"]
    # The chart names the task pods' account <release>-worker (release and namespace airflow).
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "airflow-worker", "namespace": "airflow"}
    ]


def _qa_for(modules: str, path: Path) -> Path:
    """The committed QA lines whose relevant documents all come from MODULES."""
    prefixes = tuple(f"{m}." for m in modules.split(","))
    lines = [
        line
        for qa in sorted((ROOT / "rag" / "qa").glob("*.jsonl"))
        for line in qa.read_text().splitlines()
        if line.strip() and (rel := json.loads(line).get("relevant"))
        and all(doc.startswith(prefixes) for doc in rel)
    ]  # fmt: skip
    assert len(lines) >= 10
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def served_home(tmp_path: Path) -> Iterator[tuple[Path, str, dict[str, str]]]:
    """A lakehouse on the embedded defaults (sqlite MLflow, embedded Chroma) with a champion,
    served by a real `lakeserve serve` (no RAG: the embedded index is the DAG's to write)."""
    home = small_docs_home(tmp_path / "home")
    seed_trips(Lakehouse(LakehouseSettings(home=home)), 6_000, seed=1)
    tracking = f"sqlite:///{home / 'mlflow.db'}"
    train(home, tracking, "loop-fare", "fare-ridge.yaml")
    config = write_serve_config(
        home / "serve.yaml", "loop-fare", alias_poll_interval_s=1, request_log={"flush_s": 1.0}
    )
    for platform in run_platform(home, tracking, "loop-fare", config):
        yield home, platform.url, platform.env


def test_dag_test_runs_the_whole_loop_on_the_embedded_defaults(
    airflow_home: Path, tmp_path: Path, served_home: tuple[Path, str, dict[str, str]]
) -> None:
    _, url, serve_env = served_home
    # Yesterday's traffic, with distances scaled: the monitor must call for retraining.
    fed = spawn("lake", "feed", "--url", url, "--model", "loop-fare", "--trips", "300",
                "--shift", "distance", "--json", env=serve_env)  # fmt: skip
    assert fed.code == 0, fed.err
    deadline = time.monotonic() + 60
    while spawn("lake", "requests", "--json", env=serve_env).out.count('"rows": 300') < 1:
        assert time.monotonic() < deadline, "the request log did not reach 300 rows"
        time.sleep(2)
    tools = {k: v for k, v in serve_env.items() if k.startswith("LAKESERVE_") and "PORT" not in k}
    env = _airflow_env(
        airflow_home,
        base={**clean_env(), **tools, "MLFLOW_TRACKING_URI": serve_env["MLFLOW_TRACKING_URI"],
              "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"},
        LAKESERVE_SERVING_URL=url,
    )  # fmt: skip
    # The parameters' defaults where they fit (the training config, a relative path, resolves
    # in the repository); a small corpus and its questions for the RAG gate.
    conf = {
        "model": "loop-fare", "scale": 6000, "seed": 1, "doc_modules": SMALL_MODULES,
        "qa": str(_qa_for(SMALL_MODULES, tmp_path / "qa.jsonl")), "min_recall": 0.6,
        "wait_s": 180,
    }  # fmt: skip
    result = side("run", json.dumps(conf), env=env)
    # HGB (the default config) beats the ridge champion and is rolled out; the retraining after
    # the drift alarm ties with it (same data, same config) and is not promoted.
    skipped = {"retrain_promoted", "retrain_serving_updated"}
    assert result["tasks"] == {t: "skipped" if t in skipped else "success" for t in result["tasks"]}
    assert result["run"] == "success"
    served = httpx.get(f"{url}/models", timeout=10).json()
    assert [(m["name"], m["version"]) for m in served] == [("loop-fare", "2")]
