"""What the request log costs, and what it does when the lakehouse stops answering.

One `lakeserve serve` (2 ModelServer replicas x 0.5 CPU, HAProxy) hosts the same gradient-
boosted model under two registered names: `bench-fare` logs every request
(`log_sample: 1`), `bench-fare-off` none (`log_sample: 0`). The lakehouse the replicas write to
is on S3 (moto_server on 127.0.0.1), as in a cluster. Part 1 loads the two names in alternating
rounds at the same concurrency and prints throughput and p99 with the log on / off. Part 2 loads
the logged name for `--outage-load` seconds while moto_server is SIGSTOPped for `--outage` s,
then prints the requests that failed, the request-log counters summed over every replica (Ray's
metrics export), and the rows that reached bronze.predictions after the drain.

    .venv/bin/python bench/request_log.py [--clients 32] [--rounds 3] [--duration 12] [--outage 60]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import yaml
from rich.console import Console
from rich.table import Table

_spec = importlib.util.spec_from_file_location(
    "bench_serving", Path(__file__).with_name("serving.py")
)
assert _spec is not None and _spec.loader is not None
_bench = importlib.util.module_from_spec(_spec)
sys.modules["bench_serving"] = _bench  # its dataclasses look their module up
_spec.loader.exec_module(_bench)
BIN, BODY, ROOT, free_port, load, stop, wait_ready = (
    _bench.BIN, _bench.BODY, _bench.ROOT, _bench.free_port, _bench.load, _bench.stop,
    _bench.wait_ready,
)  # fmt: skip
console = Console(stderr=True)
LOGGED, UNLOGGED = "bench-fare", "bench-fare-off"
BUCKET = "bench-lake"


def prepare(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKESERVE_", "MLFLOW_"))}
    env["LAKESERVE_HOME"] = str(home)
    console.print("seeding 50k rows, training the model under both names")
    config = str(ROOT / "training/configs/fare-hgb.yaml")
    subprocess.run([str(BIN / "lakeserve"), "lake", "seed", "--scale", "50000"], env=env,
                   check=True, capture_output=True)  # fmt: skip
    for name in (LOGGED, UNLOGGED):
        subprocess.run([str(BIN / "lakeserve"), "train", "--config", config, "--model-name", name],
                       env=env, check=True, capture_output=True)  # fmt: skip
    return env


def s3_env(endpoint: str) -> dict[str, str]:
    return {
        "LAKESERVE_LAKE_ROOT": f"s3://{BUCKET}/lake",
        "LAKESERVE_S3_ENDPOINT_URL": endpoint,
        "LAKESERVE_S3_ACCESS_KEY_ID": "bench",
        "LAKESERVE_S3_SECRET_ACCESS_KEY": "bench",
        "LAKESERVE_S3_ALLOW_HTTP": "true",
    }


def log_counters(metrics_url: str) -> dict[str, float]:
    """Request-log outcomes summed over every replica, from Ray's metrics export."""
    text = httpx.get(metrics_url, timeout=10).text
    totals: dict[str, float] = {}
    for outcome, value in re.findall(
        r'^ray_lakeserve_request_log_events_total\{[^}]*outcome="(\w+)"[^}]*\} (\S+)', text, re.M
    ):
        totals[outcome] = totals.get(outcome, 0.0) + float(value)
    queue = re.findall(r"^ray_lakeserve_request_log_queue_rows\{[^}]*\} (\S+)", text, re.M)
    totals["queued"] = sum(float(v) for v in queue)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=12)
    parser.add_argument("--outage", type=int, default=60, help="Seconds S3 is stopped; 0 skips.")
    parser.add_argument(
        "--lake",
        choices=("s3", "local"),
        default="s3",
        help="Where replicas write: moto_server as S3 (its CPU is on this machine too), or the "
        "local disk (the embedded default; no outage part).",
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="lakeserve-bench-log-"))
    env = prepare(home)

    s3_port, port, metrics_port = free_port(), free_port(), free_port()
    endpoint = f"http://127.0.0.1:{s3_port}"
    s3 = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          start_new_session=True)  # fmt: skip
    wait_ready(f"{endpoint}/moto-api/", s3)
    import boto3

    boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                 aws_secret_access_key="bench", region_name="us-east-1"
                 ).create_bucket(Bucket=BUCKET)  # fmt: skip

    config = yaml.safe_load((ROOT / "serving/serve-config.yaml").read_text())
    app = config["applications"][0]
    app["args"].update(
        models=[{"name": LOGGED, "log_sample": 1.0}, {"name": UNLOGGED, "log_sample": 0.0}],
        rag=False,
    )
    app["deployments"] = [d for d in app["deployments"] if d["name"] == "ModelServer"]
    app["deployments"][0].pop("autoscaling_config", None)
    app["deployments"][0]["num_replicas"] = 2
    (home / "serve.yaml").write_text(yaml.safe_dump(config))
    ray_dir = f"/tmp/lsl-{port}"
    lake_env = s3_env(endpoint) if args.lake == "s3" else {}
    serve_env = {**env, **lake_env, "LAKESERVE_HTTP_PORT": str(port),
                 "LAKESERVE_SERVE_CONFIG": str(home / "serve.yaml"), "LAKESERVE_RAY_TMPDIR": ray_dir,
                 "LAKESERVE_METRICS_PORT": str(metrics_port)}  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    log = (home / "serve.log").open("wb")
    server = subprocess.Popen([str(BIN / "lakeserve"), "serve"], env=serve_env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    try:
        console.print("starting lakeserve serve")
        wait_ready(f"{url}/v2/health/ready", server)
        for name in (LOGGED, UNLOGGED):
            check = httpx.post(f"{url}/predict/{name}", content=BODY,
                               headers={"Content-Type": "application/json"})  # fmt: skip
            assert check.status_code == 200, check.text
        rounds: dict[str, list[object]] = {LOGGED: [], UNLOGGED: []}
        for n in range(args.rounds):
            order = (UNLOGGED, LOGGED) if n % 2 == 0 else (LOGGED, UNLOGGED)
            for name in order:
                result = load(f"{url}/predict/{name}", args.clients, args.duration)
                rounds[name].append(result)
                console.print(f"  round {n + 1} {name:>15}: {result.rps:7.0f} req/s  "
                              f"p99 {result.p99_ms:6.1f} ms  errors {result.errors}")  # fmt: skip
        print_costs(rounds, args)
        if args.outage and args.lake == "s3":
            outage(url, s3, metrics_port, serve_env, args)
    finally:
        stop(server, ray_dir)
        log.close()
        if s3.poll() is None:
            os.killpg(s3.pid, signal.SIGCONT)
        stop(s3)
        shutil.rmtree(home, ignore_errors=True)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def print_costs(rounds: dict[str, list[object]], args: argparse.Namespace) -> None:
    on = rounds[LOGGED]
    off = rounds[UNLOGGED]
    table = Table(title=f"Request log on vs off, lake on {args.lake}, {args.clients} clients, {args.rounds} alternating "
                        f"rounds of {args.duration}s (medians)")  # fmt: skip
    for column in ("log", "req/s", "p50 ms", "p99 ms", "errors"):
        table.add_column(column, justify="right")
    stats = {}
    for label, results in (("off", off), ("on", on)):
        rps = median([r.rps for r in results])  # type: ignore[attr-defined]
        p50 = median([r.p50_ms for r in results])  # type: ignore[attr-defined]
        p99 = median([r.p99_ms for r in results])  # type: ignore[attr-defined]
        errors = sum(r.errors for r in results)  # type: ignore[attr-defined]
        stats[label] = (rps, p99)
        table.add_row(label, f"{rps:.0f}", f"{p50:.1f}", f"{p99:.1f}", str(errors))
    table.add_row("on / off", f"{stats['on'][0] / stats['off'][0]:.3f}", "",
                  f"{stats['on'][1] / stats['off'][1]:.3f}", "")  # fmt: skip
    Console(width=120).print(table)


def outage(
    url: str,
    s3: subprocess.Popen[bytes],
    metrics_port: int,
    serve_env: dict[str, str],
    args: argparse.Namespace,
) -> None:
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    time.sleep(12)  # the last rounds' rows are written
    before = log_counters(metrics_url)
    sent = args.outage + 30
    console.print(f"outage: {sent}s of load, S3 stopped from 10s to {10 + args.outage}s")

    def fault() -> None:
        time.sleep(10)
        os.killpg(s3.pid, signal.SIGSTOP)
        time.sleep(args.outage)
        peak.update(log_counters(metrics_url))
        os.killpg(s3.pid, signal.SIGCONT)

    peak: dict[str, float] = {}
    thread = threading.Thread(target=fault)
    thread.start()
    result = load(f"{url}/predict/{LOGGED}", args.clients, sent)
    thread.join()
    deadline = time.monotonic() + 180
    after = log_counters(metrics_url)
    while after.get("queued", 0) > 0 and time.monotonic() < deadline:
        time.sleep(3)
        after = log_counters(metrics_url)
    time.sleep(10)
    after = log_counters(metrics_url)
    requests = int(result.rps * sent)
    table = Table(title=f"S3 stopped {args.outage}s under {args.clients} clients for {sent}s")
    for column in ("requests (approx.)", "failed", "p99 ms", "queued at the end of the outage",
                   "written", "dropped", "rejected", "lost"):  # fmt: skip
        table.add_column(column, justify="right")
    delta = {
        k: after.get(k, 0) - before.get(k, 0) for k in ("written", "dropped", "rejected", "lost")
    }
    table.add_row(f"{requests:,}", str(result.errors), f"{result.p99_ms:.0f}",
                  f"{peak.get('queued', 0):,.0f}",
                  *(f"{delta[k]:,.0f}" for k in ("written", "dropped", "rejected", "lost")))  # fmt: skip
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
