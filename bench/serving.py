"""Serve one registered model with Lakeserve and with `mlflow models serve`; load both the same way.

Prints requests/s, p50 and p99 latency at 1, 8, 32 and 64 concurrent single-row clients, and the
ratio Lakeserve / peer. Uses wrk when installed (`apt-get install wrk`), else an asyncio client.

    .venv/bin/python bench/serving.py [--duration 10] [--clients 1,8,32,64] [--replicas 2]
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


def run_wrk(url: str, clients: int, duration: int) -> Result:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(BODY)}\n"
    )
    threads = min(clients, 2)
    out = subprocess.run(
        [
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


def run_httpx(url: str, clients: int, duration: int) -> Result:
    async def main() -> Result:
        latencies: list[float] = []
        errors = 0
        stop_at = time.perf_counter() + duration

        async def client(http: httpx.AsyncClient) -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                response = await http.post(
                    url, content=BODY, headers={"Content-Type": "application/json"}
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


def load(url: str, clients: int, duration: int) -> Result:
    warm = run_wrk if shutil.which("wrk") else run_httpx
    warm(url, clients, 2)
    return warm(url, clients, duration)


def prepare(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKESERVE_", "MLFLOW_"))}
    env["LAKESERVE_HOME"] = str(home)

    def run(*args: str) -> None:
        subprocess.run([str(BIN / "lakeserve"), *args], env=env, check=True, capture_output=True)

    console.print("seeding 50k rows and training a gradient-boosted model")
    run("lake", "seed", "--scale", "50000")
    run("train", "--config", str(ROOT / "training/configs/fare-hgb.yaml"), "--model-name", MODEL)
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--batch-wait-s", type=float, default=0.002)
    parser.add_argument("--no-haproxy", action="store_true", help="Use Serve's Python proxy.")
    parser.add_argument("--skip-peer", action="store_true", help="Measure Lakeserve only.")
    args = parser.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    home = Path(tempfile.mkdtemp(prefix="lakeserve-bench-"))
    env = prepare(home)

    config = yaml.safe_load((ROOT / "serving/serve-config.yaml").read_text())
    app = config["applications"][0]
    app["args"].update(models=[{"name": MODEL, "alias": "champion"}], max_batch_size=args.max_batch_size,
                       batch_wait_timeout_s=args.batch_wait_s)  # fmt: skip
    deployment = app["deployments"][0]
    deployment.pop("autoscaling_config", None)
    deployment["num_replicas"] = args.replicas
    (home / "serve.yaml").write_text(yaml.safe_dump(config))

    ours_port, peer_port = free_port(), free_port()
    ray_dir = f"/tmp/lsb-{ours_port}"
    ours_env = {**env, "LAKESERVE_HTTP_PORT": str(ours_port), "LAKESERVE_SERVE_CONFIG": str(home / "serve.yaml"),
                "LAKESERVE_RAY_TMPDIR": ray_dir, "LAKESERVE_HAPROXY": str(not args.no_haproxy).lower()}  # fmt: skip
    # `mlflow models serve` execs `uvicorn` from PATH.
    peer_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
                "PATH": f"{BIN}:{env.get('PATH', '')}"}  # fmt: skip
    results: dict[str, dict[int, Result]] = {}
    peers = {
        "lakeserve /predict": (
            [str(BIN / "lakeserve"), "serve"], ours_env,
            f"http://127.0.0.1:{ours_port}/v2/health/ready", f"http://127.0.0.1:{ours_port}/predict/{MODEL}", ray_dir,
        ),
        "mlflow models serve": (
            [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager", "local",
             "--host", "127.0.0.1", "--port", str(peer_port)], peer_env,
            f"http://127.0.0.1:{peer_port}/health", f"http://127.0.0.1:{peer_port}/invocations", None,
        ),
    }  # fmt: skip
    if args.skip_peer:
        del peers["mlflow models serve"]
    for name, (command, environment, health, url, marker) in peers.items():
        log = (home / f"{name.split()[0]}.log").open("wb")
        process = subprocess.Popen(
            command, env=environment, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            console.print(f"starting {name}")
            wait_ready(health, process)
            check = httpx.post(url, content=BODY, headers={"Content-Type": "application/json"})
            assert check.status_code == 200, check.text
            results[name] = {}
            for clients in levels:
                results[name][clients] = load(url, clients, args.duration)
                r = results[name][clients]
                console.print(
                    f"  {name} {clients:>3} clients: {r.rps:8.1f} req/s  p50 {r.p50_ms:7.1f} ms  p99 {r.p99_ms:7.1f} ms  errors {r.errors}"
                )
        finally:
            stop(process, marker)
            log.close()

    if args.skip_peer:
        return
    ours, peer = results["lakeserve /predict"], results["mlflow models serve"]
    table = Table(
        title=f"Single-row requests, {args.duration}s per level, {os.cpu_count()} cores, load by {'wrk' if shutil.which('wrk') else 'httpx'}"
    )
    for column in (
        "clients",
        "lakeserve req/s",
        "p50 ms",
        "p99 ms",
        "mlflow req/s",
        "p50 ms",
        "p99 ms",
        "throughput x",
        "p99 ratio",
    ):
        table.add_column(column, justify="right")
    for clients in levels:
        a, b = ours[clients], peer[clients]
        table.add_row(str(clients), f"{a.rps:.0f}", f"{a.p50_ms:.1f}", f"{a.p99_ms:.1f}", f"{b.rps:.0f}",
                      f"{b.p50_ms:.1f}", f"{b.p99_ms:.1f}", f"{a.rps / b.rps:.1f}x", f"{a.p99_ms / b.p99_ms:.2f}")  # fmt: skip
    Console(width=140).print(table)
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
