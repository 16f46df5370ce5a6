"""Serve one registered model with Lakeserve and with its peers; load each the same way.

Peers (`--peers`, in this order, one at a time, each loaded at every level for `--rounds`
rounds; the table shows medians):
- `lakeserve`: `lakeserve serve` (HAProxy, `--replicas` ModelServer replicas x 0.5 CPU, the
  request log on, no RAG deployment),
  /predict with the MLflow `dataframe_split` body and /v2/models/M/infer with the V2 body.
- `mlserver`: MLServer 1.7.1 + mlserver-mlflow in its own venv (`make bench-peers`), adaptive
  batching (`--mlserver-batch 64`, `--mlserver-wait-s 0.002`), OMP_NUM_THREADS=1, on the same
  model's artifacts; /invocations and /v2/models/M/infer with the same bodies.
- `ceiling`: bench/ceiling.py under uvicorn with 2 workers, batching into the scikit-learn
  pipeline with nothing else around it; `noop`: the same answering a constant (HTTP ceiling).
- `mlflow`: `mlflow models serve`.

Prints req/s, p50 and p99 at 1, 8, 32 and 64 concurrent single-row clients (wrk when installed,
else an asyncio client; wrk runs at the niceness of the server's workers, 15 for Ray's, so
that neither takes the CPU from the other by priority), the resident memory of each server (and of each Lakeserve replica),
and the ratios Lakeserve / peer.

    .venv/bin/python bench/serving.py [--duration 12] [--rounds 3] [--clients 1,8,32,64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL = "bench-fare"
ROW = {
    "trip_distance": 3.2,
    "passenger_count": 1,
    "pickup_hour": 8,
    "pickup_dow": 2,
    "is_weekend": False,
    "pickup_borough": "Manhattan",
    "dropoff_borough": "Brooklyn",
    "is_airport": False,
    "rate_code": "Standard",
}
BODY = json.dumps({"dataframe_split": {"columns": list(ROW), "data": [list(ROW.values())]}})
console = Console(stderr=True)


@dataclass
class Result:
    """One load run."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(url)


def stop(process: subprocess.Popen[bytes], marker: str | None = None) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    if marker:
        import psutil

        for leftover in psutil.process_iter(["cmdline"]):
            if any(marker in part for part in leftover.info["cmdline"] or []):
                leftover.kill()


def run_wrk(url: str, clients: int, duration: int, body: str = BODY, nice: int = 0) -> Result:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body)}\n"
    )
    threads = min(clients, 2)
    out = subprocess.run(
        [
            *(["nice", "-n", str(nice)] if nice else []),
            "wrk",
            f"-t{threads}",
            f"-c{clients}",
            f"-d{duration}s",
            "--latency",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script.unlink()

    def latency(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)", out, re.MULTILINE).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(int(n) for n in sockets.groups()) if sockets else 0
    return Result(
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=latency("50%"),
        p99_ms=latency("99%"),
        errors=errors,
    )


def run_httpx(url: str, clients: int, duration: int, body: str = BODY, nice: int = 0) -> Result:
    """Load with an asyncio client in this process (when wrk is missing; `nice` is not applied)."""
    del nice

    async def main() -> Result:
        latencies: list[float] = []
        errors = 0
        stop_at = time.perf_counter() + duration

        async def client(http: httpx.AsyncClient) -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                response = await http.post(
                    url, content=body, headers={"Content-Type": "application/json"}
                )
                latencies.append(time.perf_counter() - started)
                errors += response.status_code != 200

        limits = httpx.Limits(max_connections=clients)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            begun = time.perf_counter()
            await asyncio.gather(*(client(http) for _ in range(clients)))
            elapsed = time.perf_counter() - begun
        ms = np.array(latencies) * 1000
        return Result(
            len(latencies) / elapsed,
            float(np.percentile(ms, 50)),
            float(np.percentile(ms, 99)),
            errors,
        )

    return asyncio.run(main())


def load(url: str, clients: int, duration: int, body: str = BODY, nice: int = 0) -> Result:
    """Warm up, then load; the load generator runs at `nice` (see server_niceness)."""
    warm = run_wrk if shutil.which("wrk") else run_httpx
    warm(url, clients, 2, body, nice)
    return warm(url, clients, duration, body, nice)


def server_niceness(pid: int, marker: str | None) -> int:
    """The niceness the server's workers run at (its replicas when `marker` names them).

    Ray starts its workers at niceness 15 (`worker_niceness`, so that the raylet keeps up);
    a load generator left at 0 would take the CPU first on a shared machine and measure less
    than the server can do. Each server is loaded by a generator at its own workers' niceness.
    """
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
        chosen = [p for p in processes if marker and marker in " ".join(p.cmdline())] or [root]
        return max(p.nice() for p in chosen)
    except psutil.Error:
        return 0


def prepare(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKESERVE_", "MLFLOW_"))}
    env["LAKESERVE_HOME"] = str(home)

    def run(*args: str) -> None:
        subprocess.run([str(BIN / "lakeserve"), *args], env=env, check=True, capture_output=True)

    console.print("seeding 50k rows and training a gradient-boosted model")
    run("lake", "seed", "--scale", "50000")
    run("train", "--config", str(ROOT / "training/configs/fare-hgb.yaml"), "--model-name", MODEL)
    return env


def v2_body(url: str) -> str:
    """The V2 body of ROW, typed as the server's model metadata says (MLServer decodes it to
    a DataFrame with `content_type: pd`; Lakeserve ignores the parameter)."""
    metadata = httpx.get(f"{url}/v2/models/{MODEL}", timeout=10).json()
    inputs = [
        {"name": spec["name"], "shape": [1], "datatype": spec["datatype"],
         "data": [ROW[spec["name"]]]}
        for spec in metadata["inputs"]
    ]  # fmt: skip
    return json.dumps({"inputs": inputs, "parameters": {"content_type": "pd"}})


def tree_rss_mb(pid: int, marker: str | None = None) -> tuple[float, list[float]]:
    """Resident memory of a process tree (and of its processes whose command line names
    `marker`, e.g. Serve replicas), in MB."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, []
    total, marked = 0.0, []
    for process in processes:
        try:
            rss = process.memory_info().rss / 2**20
            cmdline = " ".join(process.cmdline())
        except psutil.Error:
            continue
        total += rss
        if marker and marker in cmdline:
            marked.append(rss)
    return total, marked


@dataclass
class Peer:
    """How to start one server and where its endpoints are."""

    command: list[str]
    env: dict[str, str]
    health: str
    json_url: str
    v2_url: str | None
    marker: str | None = None  # left-over processes to kill by command line
    replica: str | None = None  # what a replica's command line contains


def mlserver_peer(home: Path, env: dict[str, str], args: argparse.Namespace) -> Peer:
    import mlflow

    python = Path(args.mlserver_venv) / "bin" / "mlserver"
    if not python.exists():
        raise SystemExit(f"{python} missing: run `make bench-peers`")
    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    models = home / "mlserver"
    model_dir = models / MODEL
    model_dir.mkdir(parents=True)
    artifacts = mlflow.artifacts.download_artifacts(
        f"models:/{MODEL}@champion", dst_path=str(model_dir / "artifacts")
    )
    port, grpc, metrics = free_port(), free_port(), free_port()
    (models / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": port, "grpc_port": grpc, "metrics_port": metrics,
        "parallel_workers": args.mlserver_workers, "debug": False,
    }))  # fmt: skip
    (model_dir / "model-settings.json").write_text(json.dumps({
        "name": MODEL, "implementation": "mlserver_mlflow.MLflowRuntime",
        "max_batch_size": args.mlserver_batch, "max_batch_time": args.mlserver_wait_s,
        "parameters": {"uri": artifacts},
    }))  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    return Peer(
        [str(python), "start", str(models)], {**env, "OMP_NUM_THREADS": "1"},
        f"{base}/v2/health/ready", f"{base}/invocations", f"{base}/v2/models/{MODEL}/infer",
        marker=str(models),
    )  # fmt: skip


def ceiling_peer(home: Path, env: dict[str, str], mode: str) -> Peer:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
    path = mlflow.artifacts.download_artifacts(
        f"models:/{MODEL}@champion", dst_path=str(home / f"ceiling-{mode}")
    )
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    return Peer(
        [str(BIN / "uvicorn"), "bench.ceiling:app", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "2" if mode == "model" else "1", "--no-access-log", "--log-level", "warning"],
        # One OpenMP thread per worker, as MLServer gets: two workers spinning two threads each
        # on two cores collapse under load.
        {**env, "BENCH_CEILING": mode, "BENCH_MODEL_PATH": path, "PYTHONPATH": str(ROOT),
         "OMP_NUM_THREADS": "1"},
        f"{base}/health", f"{base}/invocations", None, marker=path,
    )  # fmt: skip


def lakeserve_peer(home: Path, env: dict[str, str], args: argparse.Namespace) -> Peer:
    config = yaml.safe_load((ROOT / "serving/serve-config.yaml").read_text())
    app = config["applications"][0]
    # Models only, as the peers host them: no RAG deployment beside the model replicas.
    app["args"].update(models=[{"name": MODEL, "alias": "champion"}], max_batch_size=args.max_batch_size,
                       batch_wait_timeout_s=args.batch_wait_s, rag=False)  # fmt: skip
    app["deployments"] = [d for d in app["deployments"] if d["name"] == "ModelServer"]
    deployment = app["deployments"][0]
    deployment.pop("autoscaling_config", None)
    deployment["num_replicas"] = args.replicas
    (home / "serve.yaml").write_text(yaml.safe_dump(config))
    port = free_port()
    ray_dir = f"/tmp/lsb-{port}"
    base = f"http://127.0.0.1:{port}"
    return Peer(
        [str(BIN / "lakeserve"), "serve"],
        {**env, "LAKESERVE_HTTP_PORT": str(port), "LAKESERVE_SERVE_CONFIG": str(home / "serve.yaml"),
         "LAKESERVE_RAY_TMPDIR": ray_dir, "LAKESERVE_HAPROXY": str(not args.no_haproxy).lower()},
        f"{base}/v2/health/ready", f"{base}/predict/{MODEL}", f"{base}/v2/models/{MODEL}/infer",
        marker=ray_dir, replica="ModelServer",
    )  # fmt: skip


def mlflow_peer(home: Path, env: dict[str, str]) -> Peer:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # `mlflow models serve` execs `uvicorn` from PATH.
    return Peer(
        [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)],
        {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}", "PATH": f"{BIN}:{env.get('PATH', '')}"},
        f"{base}/health", f"{base}/invocations", None,
    )  # fmt: skip


@dataclass
class Measured:
    """Medians over the rounds at each level, per body, and the memory after the load."""

    levels: dict[str, dict[int, Result]]
    rss_mb: float
    replica_rss_mb: list[float]


def median(results: list[Result]) -> Result:
    return Result(
        float(np.median([r.rps for r in results])),
        float(np.median([r.p50_ms for r in results])),
        float(np.median([r.p99_ms for r in results])),
        sum(r.errors for r in results),
    )


def measure(
    name: str, peer: Peer, home: Path, args: argparse.Namespace, shared: dict[str, str]
) -> Measured:
    log = (home / f"{name}.log").open("wb")
    process = subprocess.Popen(
        peer.command, env=peer.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        cwd=ROOT,
    )  # fmt: skip
    levels = [int(c) for c in args.clients.split(",")]
    try:
        console.print(f"starting {name}")
        wait_ready(peer.health, process)
        bodies = {"json": (peer.json_url, BODY)}
        if peer.v2_url is not None:
            if "v2" not in shared:  # typed as the first V2 server's metadata says
                shared["v2"] = v2_body(peer.v2_url.split("/v2/")[0])
            bodies["v2"] = (peer.v2_url, shared["v2"])
        for kind, (url, body) in bodies.items():
            check = httpx.post(url, content=body, headers={"Content-Type": "application/json"})
            assert check.status_code == 200, (name, kind, check.text)
        out: dict[str, dict[int, Result]] = {kind: {} for kind in bodies}
        nice = server_niceness(process.pid, peer.replica)
        console.print(f"  {name}: load generator at niceness {nice}, the server's")
        for kind, (url, body) in bodies.items():
            for clients in levels:
                rounds = [load(url, clients, args.duration, body, nice) for _ in range(args.rounds)]
                r = out[kind][clients] = median(rounds)
                console.print(
                    f"  {name} {kind} {clients:>3} clients: {r.rps:8.1f} req/s  p50 {r.p50_ms:7.1f} ms  "
                    f"p99 {r.p99_ms:7.1f} ms  errors {r.errors}  (rounds: {', '.join(f'{x.rps:.0f}' for x in rounds)})"
                )
        rss, replicas = tree_rss_mb(process.pid, peer.replica)
        return Measured(out, rss, replicas)
    finally:
        stop(process, peer.marker)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--peers", default="lakeserve,mlserver,ceiling,noop",
                        help="Comma-separated: lakeserve, mlserver, ceiling, noop, mlflow.")  # fmt: skip
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-wait-s", type=float, default=0.002)
    parser.add_argument("--no-haproxy", action="store_true", help="Use Serve's Python proxy.")
    parser.add_argument("--mlserver-venv", default=str(ROOT / ".venv-mlserver"))
    parser.add_argument("--mlserver-batch", type=int, default=64)
    parser.add_argument("--mlserver-wait-s", type=float, default=0.002)
    parser.add_argument("--mlserver-workers", type=int, default=1)
    args = parser.parse_args()
    names = [p.strip() for p in args.peers.split(",") if p.strip()]
    home = Path(tempfile.mkdtemp(prefix="lakeserve-bench-"))
    env = prepare(home)
    makers = {
        "lakeserve": lambda: lakeserve_peer(home, env, args),
        "mlserver": lambda: mlserver_peer(home, env, args),
        "ceiling": lambda: ceiling_peer(home, env, "model"),
        "noop": lambda: ceiling_peer(home, env, "noop"),
        "mlflow": lambda: mlflow_peer(home, env),
    }
    unknown = set(names) - set(makers)
    if unknown:
        raise SystemExit(f"unknown peers: {sorted(unknown)}")
    results: dict[str, Measured] = {}
    shared: dict[str, str] = {}
    for name in names:
        results[name] = measure(name, makers[name](), home, args, shared)
    report(results, args)
    shutil.rmtree(home, ignore_errors=True)


def report(results: dict[str, Measured], args: argparse.Namespace) -> None:
    loader = "wrk" if shutil.which("wrk") else "httpx"
    levels = [int(c) for c in args.clients.split(",")]
    width = Console(width=160)
    for kind in ("json", "v2"):
        served = {n: m.levels[kind] for n, m in results.items() if kind in m.levels}
        if not served:
            continue
        table = Table(title=f"{kind} single-row requests: medians of {args.rounds} rounds of {args.duration}s, "
                            f"{os.cpu_count()} cores, load by {loader}")  # fmt: skip
        table.add_column("clients", justify="right")
        for name in served:
            table.add_column(f"{name} req/s", justify="right")
            table.add_column("p50/p99 ms", justify="right")
        ours = served.get("lakeserve")
        others = [n for n in served if n != "lakeserve"] if ours else []
        for name in others:
            table.add_column(f"x {name}", justify="right")
        for clients in levels:
            row = [str(clients)]
            for name in served:
                r = served[name][clients]
                row += [
                    f"{r.rps:.0f}",
                    f"{r.p50_ms:.1f}/{r.p99_ms:.0f}" + (f" ({r.errors} err)" if r.errors else ""),
                ]
            for name in others:
                a, b = ours[clients], served[name][clients]  # type: ignore[index]
                row.append(f"{a.rps / b.rps:.2f}x, p99 {a.p99_ms / b.p99_ms:.2f}")
            table.add_row(*row)
        width.print(table)
    for name, m in results.items():
        replicas = (
            f" ({len(m.replica_rss_mb)} replicas: {', '.join(f'{r:.0f}' for r in m.replica_rss_mb)} MB)"
            if m.replica_rss_mb
            else ""
        )
        width.print(f"{name}: {m.rss_mb:.0f} MB resident after the load{replicas}")


if __name__ == "__main__":
    main()
