"""The Airflow half of tests/loop: runs in Airflow's own venv (`make airflow`), prints JSON.

    graph            the DAG as Airflow loads it: import errors, tasks, edges, gates, commands
    pods             the pod each task's KubernetesPodOperator would create (mode kubernetes)
    run CONF_JSON    dag.test() with this run conf; the state of every task and of the run

The pytest side (tests/loop/test_dag.py) sets the environment (AIRFLOW_HOME, the mode,
LAKESERVE_BIN, the Lakeserve settings) and asserts on the output.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

DAGS = Path(__file__).parents[2] / "dags"
DAG_ID = "lakeserve_loop"


def _bag() -> Any:
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))


def _context(dag: Any) -> dict[str, Any]:
    params = {name: param.value for name, param in dag.params.items()}
    return {"params": params, "run_id": "manual__2026-12-03T00:00:00+00:00"}


def graph() -> dict[str, Any]:
    bag = _bag()
    dag = bag.dags.get(DAG_ID)
    out: dict[str, Any] = {"import_errors": {str(k): v for k, v in bag.import_errors.items()}}
    if dag is None:
        return out
    context = _context(dag)
    tasks = {}
    for task in dag.tasks:
        task.render_template_fields(context)
        tasks[task.task_id] = {
            "operator": type(task).__name__,
            "downstream": sorted(task.downstream_task_ids),
            "trigger_rule": str(task.trigger_rule),
            "skip_on_exit_code": sorted(getattr(task, "skip_on_exit_code", None) or []),
            "command": getattr(task, "bash_command", None),
            "arguments": getattr(task, "arguments", None),
        }
    out |= {"tasks": tasks, "params": context["params"], "schedule": str(dag.schedule)}
    return out


def pods() -> list[dict[str, Any]]:
    from kubernetes.client import ApiClient

    dag = _bag().dags[DAG_ID]
    context = _context(dag)
    rendered = []
    for task in dag.tasks:
        task.render_template_fields(context)
        # What the pod's labels read off the task instance of a real run.
        ti = SimpleNamespace(dag_id=dag.dag_id, task_id=task.task_id, map_index=-1, try_number=1)
        pod = task.build_pod_request_obj({**context, "ti": ti, "dag": dag})
        manifest = ApiClient().sanitize_for_serialization(pod)
        skip = sorted(task.skip_on_exit_code or [])
        rendered.append({"task_id": task.task_id, "pod": manifest, "skip_on_exit_code": skip})
    return rendered


def run(conf: dict[str, Any]) -> dict[str, Any]:
    dag = _bag().dags[DAG_ID]
    run = dag.test(run_conf=conf)
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    return {"run": str(run.state), "tasks": states}


def main() -> None:
    command = sys.argv[1]
    if command == "graph":
        result: Any = graph()
    elif command == "pods":
        result = pods()
    elif command == "run":
        result = run(json.loads(sys.argv[2]))
    else:
        raise SystemExit(f"unknown command {command!r}")
    # The last line of stdout is the result (Airflow logs to stdout during dag.test()).
    sys.stdout.write("\n" + json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # Airflow's atexit hooks (its log server, the sqlite pool) are not ours to wait on


if __name__ == "__main__":
    main()
