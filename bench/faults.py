"""Faults under load: what clients see when a model replica dies or the registry goes down.

Starts a real MLflow server and `lakeserve serve` (2 ModelServer replicas, no RAG) with a
registered gradient-boosted model, sends single-row requests from 8 concurrent clients the whole
time, and injects, in turn:

- **replica killed**: SIGKILL to one ModelServer replica process (Serve restarts it);
- **registry down**: SIGKILL to the MLflow server (replicas keep the version they loaded), then
  restarted on the same port and store.

For each fault it prints the requests sent, those that failed (non-200 or no answer), the seconds
until the platform is back (both replicas alive; registry reachable again per /models), and p99
latency before, during (10 s after the fault) and after.

    .venv/bin/python bench/faults.py [--clients 8] [--window 20]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

# The serving benchmark's helpers (bench/serving.py; `serving` alone is the package).
_spec = importlib.util.spec_from_file_location(
    "bench_serving", Path(__file__).with_name("serving.py")
)
assert _spec is not None and _spec.loader is not None
_bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_serving"] = _bench  # its dataclasses look their module up
_spec.loader.exec_module(_bench)
BODY, ROOT, free_port, stop, wait_ready = (
    _bench.BODY, _bench.ROOT, _bench.free_port, _bench.stop, _bench.wait_ready,
)  # fmt: skip

BIN = Path(sys.executable).parent
MODEL = "bench-fare"
REPLICA_TITLE = "ServeReplica:models:ModelServer"
console = Console(stderr=True)


@dataclass
class Load:
    """Requests sent by the clients: (time sent, seconds taken, status or 0 for no answer)."""

    samples: list[tuple[float, float, int]] = field(default_factory=list)
    stopping: bool = False

    def window(self, start: float, end: float) -> list[tuple[float, float, int]]:
        return [s for s in self.samples if start <= s[0] < end]


def p99_ms(samples: list[tuple[float, float, int]]) -> float:
    ok = [took for _, took, status in samples if status == 200]
    return float(np.percentile(ok, 99) * 1000) if ok else float("nan")


def run_load(url: str, clients: int, load: Load) -> threading.Thread:
    async def client(http: httpx.AsyncClient) -> None:
        while not load.stopping:
            sent = time.monotonic()
            try:
                response = await http.post(
                    url, content=BODY, headers={"Content-Type": "application/json"}
                )
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            load.samples.append((sent, time.monotonic() - sent, status))

    async def main() -> None:
        limits = httpx.Limits(max_connections=clients)
        async with httpx.AsyncClient(timeout=30, limits=limits) as http:
            await asyncio.gather(*(client(http) for _ in range(clients)))

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    return thread


def replica_pids() -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [
        int(line.split()[0])
        for line in out.splitlines()
        if REPLICA_TITLE in line and "ps -eo" not in line
    ]


def start_mlflow(home: Path, port: int) -> subprocess.Popen[bytes]:
    command = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
               "--artifacts-destination", str(home / "artifacts"), "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]  # fmt: skip
    log = (home / "mlflow.log").open("ab")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    wait_ready(f"http://127.0.0.1:{port}/health", process)
    return process


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--window", type=float, default=20.0, help="Seconds observed after a fault."
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="lakeserve-faults-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKESERVE_", "MLFLOW_"))}
    mlflow_port, port = free_port(), free_port()
    tracking = f"http://127.0.0.1:{mlflow_port}"
    env.update(LAKESERVE_HOME=str(home), MLFLOW_TRACKING_URI=tracking)
    registry = start_mlflow(home, mlflow_port)
    console.print("seeding 50k rows and training a gradient-boosted model")
    for command in (["lake", "seed", "--scale", "50000"],
                    ["train", "--config", str(ROOT / "training/configs/fare-hgb.yaml"), "--model-name", MODEL]):  # fmt: skip
        subprocess.run([str(BIN / "lakeserve"), *command], env=env, check=True, capture_output=True)

    config = yaml.safe_load((ROOT / "serving/serve-config.yaml").read_text())
    app = config["applications"][0]
    app["args"].update(
        models=[{"name": MODEL, "alias": "champion"}], rag=False, alias_poll_interval_s=2
    )
    app["deployments"] = [d for d in app["deployments"] if d["name"] == "ModelServer"]
    app["deployments"][0].pop("autoscaling_config")
    app["deployments"][0]["num_replicas"] = 2
    (home / "serve.yaml").write_text(yaml.safe_dump(config))
    ray_dir = f"/tmp/lsf-{port}"
    serve_env = {**env, "LAKESERVE_HTTP_PORT": str(port), "LAKESERVE_SERVE_CONFIG": str(home / "serve.yaml"),
                 "LAKESERVE_RAY_TMPDIR": ray_dir}  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    log = (home / "serve.log").open("wb")
    server = subprocess.Popen([str(BIN / "lakeserve"), "serve"], env=serve_env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    rows = []
    try:
        wait_ready(f"{base}/v2/health/ready", server)
        while len(replica_pids()) < 2:
            time.sleep(0.5)
        load = Load()
        thread = run_load(f"{base}/predict/{MODEL}", args.clients, load)
        time.sleep(10)

        console.print("fault: SIGKILL one ModelServer replica")
        fault = time.monotonic()
        os.kill(replica_pids()[0], signal.SIGKILL)
        time.sleep(1)
        while len(replica_pids()) < 2:
            time.sleep(0.2)
        recovered = time.monotonic() - fault
        time.sleep(max(0.0, args.window - recovered))
        rows.append(("replica killed (SIGKILL)", load, fault, recovered))

        console.print("fault: MLflow server stopped, restarted 10 s later")
        fault = time.monotonic()
        stop(registry)
        time.sleep(10)
        models = httpx.get(f"{base}/models").json()
        console.print(f"  /models while MLflow is down: {json.dumps(models)[:300]}")
        registry = start_mlflow(home, mlflow_port)
        while True:
            if all(not m["last_error"] for m in httpx.get(f"{base}/models").json()):
                break
            time.sleep(0.5)
        recovered = time.monotonic() - fault
        time.sleep(5)
        rows.append(("registry (MLflow) stopped for 10 s", load, fault, recovered))
        load.stopping = True
        thread.join(35)
    finally:
        stop(server, ray_dir)
        stop(registry)
        log.close()

    table = Table(
        title=f"Faults under load: {args.clients} clients, single-row /predict, {os.cpu_count()} cores"
    )
    for column in ("fault", "requests", "failed", "failed %", "recovery s", "p99 before ms",
                   "p99 during ms", "p99 after ms"):  # fmt: skip
        table.add_column(column, justify="right" if column != "fault" else "left")
    for name, load, fault, recovered in rows:
        during = load.window(fault, fault + 10)
        sent = load.window(fault, fault + max(recovered, 10))
        failed = sum(1 for _, _, status in sent if status != 200)
        table.add_row(
            name, str(len(sent)), str(failed), f"{100 * failed / max(len(sent), 1):.2f}",
            f"{recovered:.1f}", f"{p99_ms(load.window(fault - 10, fault)):.1f}",
            f"{p99_ms(during):.1f}", f"{p99_ms(load.window(fault + recovered, fault + recovered + 5)):.1f}",
        )  # fmt: skip
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
