"""Faults under load: what clients see when a component of the platform fails.

Starts real servers on 127.0.0.1 (MLflow, moto_server as S3, `chroma run`, a stand-in OpenAI
endpoint `bench/llm_stub.py`) and `lakeserve serve` with everything on them: a registered
gradient-boosted model (2 ModelServer replicas), RAG with generated answers (1 RagServer) over
a small document index, the lakehouse and its feedback table on S3. Clients send the whole
time: 8 single-row `/predict`, 2 `/rag/query`, 1 `/rag/feedback` with an event id each. Faults,
in turn:

- **replica killed**: SIGKILL to one ModelServer replica process (Serve restarts it);
- **registry down**: the MLflow server stopped for 10 s, restarted on the same port and store;
- **Chroma hung**: SIGSTOP for 10 s, then SIGCONT; **Chroma down**: killed, restarted 10 s later;
- **LLM down**: the endpoint stopped for 10 s, restarted;
- **S3 hung**: moto_server SIGSTOPped for 10 s (its data is in memory), then SIGCONT.

For each fault and each kind of request it prints the requests sent in the fault's window, those
that failed (5xx other than 503, or no answer), those whose kept-alive connection was closed
before any answer (a proxy reload; safe to send again, as the openai client and the chat page's
client do), 503s (each with Retry-After), degraded answers
(RAG answers quoted from the sources because the LLM is down), the seconds until the platform is
whole again, and p99 latency before, during (10 s after the fault) and after. At the end every
feedback event acknowledged with 201 is looked up in the table.

    .venv/bin/python bench/faults.py [--clients 8] [--window 20]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import boto3
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


BUCKET = "bench-lake"
DOC_MODULES = ["json", "shlex", "textwrap", "colorsys", "base64", "difflib"]
QUESTIONS = ["How do I pretty-print JSON?", "How do I split a shell command line?",
             "How do I wrap text to a width?", "How do I convert RGB to HSV?",
             "How do I encode bytes as base64?", "How do I compare two sequences?"]  # fmt: skip
OK = {200, 201}


@dataclass
class Load:
    """Requests of one kind: (time sent, seconds taken, status or 0, degraded, Retry-After set)."""

    name: str
    samples: list[tuple[float, float, int, bool, bool]] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)  # feedback event ids answered 201

    def window(self, start: float, end: float) -> list[tuple[float, float, int, bool, bool]]:
        return [s for s in self.samples if start <= s[0] < end]


def p99_ms(samples: list[tuple[float, float, int, bool, bool]]) -> float:
    ok = [took for _, took, status, _, _ in samples if status in OK]
    return float(np.percentile(ok, 99) * 1000) if ok else float("nan")


def run_loads(
    base: str, clients: int, stopping: threading.Event
) -> tuple[list[Load], threading.Thread]:
    """Start the clients in a thread: predictions, RAG questions and feedback events."""
    predict, rag, feedback = Load("predict"), Load("rag query"), Load("feedback")

    async def loop(http: httpx.AsyncClient, load: Load, n: int) -> None:
        while not stopping.is_set():
            sent, event = time.monotonic(), uuid.uuid4().hex
            degraded = False
            try:
                if load is predict:
                    response = await http.post(f"{base}/predict/{MODEL}", content=BODY,
                                               headers={"Content-Type": "application/json"})  # fmt: skip
                elif load is rag:
                    body = {"question": QUESTIONS[n % len(QUESTIONS)]}
                    response = await http.post(f"{base}/rag/query", json=body)
                    degraded = (
                        response.status_code == 200 and response.json()["mode"] == "retrieval_only"
                    )
                else:
                    body = {"event_id": event, "answer_id": f"bench-{event[:8]}", "rating": "up",
                            "question": QUESTIONS[0], "answer": "Use json.dumps [1]."}  # fmt: skip
                    response = await http.post(f"{base}/rag/feedback", json=body)
                status = response.status_code
                retry_after = "retry-after" in response.headers
            except httpx.RemoteProtocolError as exc:
                # -1: a kept-alive connection closed as the request went out (HAProxy reloads
                # when replicas change); nothing was answered, a client may send it again.
                status = -1 if "without sending a response" in str(exc) else 0
                retry_after = False
            except httpx.HTTPError:
                status, retry_after = 0, False
            if status == 201:
                load.acknowledged.append(event)
            load.samples.append((sent, time.monotonic() - sent, status, degraded, retry_after))
            n += 1
            if load is feedback:
                await asyncio.sleep(0.1)

    async def main() -> None:
        limits = httpx.Limits(max_connections=clients + 4)
        async with httpx.AsyncClient(timeout=60, limits=limits) as http:
            await asyncio.gather(
                *(loop(http, predict, n) for n in range(clients)),
                *(loop(http, rag, n) for n in range(2)),
                loop(http, feedback, 0),
            )

    thread = threading.Thread(target=lambda: asyncio.run(main()), daemon=True)
    thread.start()
    return [predict, rag, feedback], thread


def replica_pids() -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [
        int(line.split()[0])
        for line in out.splitlines()
        if REPLICA_TITLE in line and "ps -eo" not in line
    ]


def server(command: list[str], ready: str, log: Path, **env: str) -> subprocess.Popen[bytes]:
    """Start a server in its own session (so it can be stopped as a group), wait until ready."""
    process = subprocess.Popen(command, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                               start_new_session=True, env={**os.environ, **env})  # fmt: skip
    wait_ready(ready, process)
    return process


def start_mlflow(home: Path, port: int) -> subprocess.Popen[bytes]:
    command = [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{home / 'mlflow.db'}",
               "--artifacts-destination", str(home / "artifacts"), "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1"]  # fmt: skip
    return server(command, f"http://127.0.0.1:{port}/health", home / "mlflow.log")


def start_chroma(home: Path, port: int) -> subprocess.Popen[bytes]:
    command = [str(BIN / "chroma"), "run", "--path", str(home / "chroma"), "--host", "127.0.0.1",
               "--port", str(port)]  # fmt: skip
    return server(command, f"http://127.0.0.1:{port}/api/v2/heartbeat", home / "chroma.log")


def start_llm(home: Path, port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, str(Path(__file__).with_name("llm_stub.py")), str(port)]
    return server(command, f"http://127.0.0.1:{port}/v1/models", home / "llm.log")


def eventually(condition: Callable[[], bool], timeout_s: float = 300) -> bool:
    """Wait until `condition()` holds; False if it did not within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def answers(base: str, question: str = QUESTIONS[0]) -> str | None:
    """The mode of a RAG answer now, or None when it is not answered."""
    try:
        response = httpx.post(f"{base}/rag/query", json={"question": question}, timeout=30)
    except httpx.HTTPError:
        return None
    return str(response.json()["mode"]) if response.status_code == 200 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="Concurrent /predict clients.")
    parser.add_argument(
        "--window", type=float, default=20.0, help="Seconds observed after a fault."
    )
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="lakeserve-faults-"))
    mlflow_port, s3_port, chroma_port, llm_port, port = (free_port() for _ in range(5))
    s3 = f"http://127.0.0.1:{s3_port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKESERVE_", "MLFLOW_"))}
    env.update(
        LAKESERVE_HOME=str(home), MLFLOW_TRACKING_URI=f"http://127.0.0.1:{mlflow_port}",
        LAKESERVE_LAKE_ROOT=f"s3://{BUCKET}/lake", LAKESERVE_S3_ENDPOINT_URL=s3,
        LAKESERVE_S3_ACCESS_KEY_ID="bench", LAKESERVE_S3_SECRET_ACCESS_KEY="bench",
        LAKESERVE_S3_ALLOW_HTTP="true",
        LAKESERVE_CHROMA_URL=f"http://127.0.0.1:{chroma_port}", LAKESERVE_CHROMA_TIMEOUT_S="3",
        LAKESERVE_RAG_COLLECTION="bench", LAKESERVE_ANSWER_MODE="generated",
        LAKESERVE_LLM_BASE_URL=f"http://127.0.0.1:{llm_port}/v1", LAKESERVE_LLM_MODEL="stub",
        LAKESERVE_LLM_TIMEOUT_S="5",
    )  # fmt: skip
    servers = {
        "mlflow": start_mlflow(home, mlflow_port),
        "s3": server(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
            f"{s3}/moto-api/",
            home / "s3.log",
        ),
        "chroma": start_chroma(home, chroma_port),
        "llm": start_llm(home, llm_port),
    }
    boto3.client("s3", endpoint_url=s3, aws_access_key_id="bench", aws_secret_access_key="bench",
                 region_name="us-east-1").create_bucket(Bucket=BUCKET)  # fmt: skip
    console.print("seeding 50k trips and a small document corpus on S3, training, ingesting")
    for command in (["lake", "seed", "--scale", "50000", "--modules", ",".join(DOC_MODULES)],
                    ["train", "--config", str(ROOT / "training/configs/fare-hgb.yaml"), "--model-name", MODEL],
                    ["rag", "ingest", "--executor", "local"]):  # fmt: skip
        subprocess.run([str(BIN / "lakeserve"), *command], env=env, check=True, capture_output=True)

    config = yaml.safe_load((ROOT / "serving/serve-config.yaml").read_text())
    app = config["applications"][0]
    app["args"].update(models=[{"name": MODEL, "alias": "champion"}], alias_poll_interval_s=2)
    for deployment in app["deployments"]:
        deployment.pop("autoscaling_config")
        deployment["num_replicas"] = 2 if deployment["name"] == "ModelServer" else 1
    (home / "serve.yaml").write_text(yaml.safe_dump(config))
    ray_dir = f"/tmp/lsf-{port}"
    serve_env = {**env, "LAKESERVE_HTTP_PORT": str(port), "LAKESERVE_SERVE_CONFIG": str(home / "serve.yaml"),
                 "LAKESERVE_RAY_TMPDIR": ray_dir}  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    log = (home / "serve.log").open("wb")
    platform = subprocess.Popen([str(BIN / "lakeserve"), "serve"], env=serve_env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    rows: list[tuple[str, float, float]] = []
    stopping = threading.Event()
    loads: list[Load] = []
    try:
        wait_ready(f"{base}/v2/health/ready", platform)
        if not eventually(lambda: len(replica_pids()) >= 2 and answers(base) == "generated"):
            raise TimeoutError("the platform did not start answering")
        loads, thread = run_loads(base, args.clients, stopping)
        time.sleep(10)

        def observe(name: str, fault: float, whole: Callable[[], bool]) -> None:
            # Not back within 5 minutes: reported as such (recovery nan), the next fault runs.
            recovered = time.monotonic() - fault if eventually(whole) else float("nan")
            time.sleep(max(5.0, args.window - recovered))
            rows.append((name, fault, recovered))

        def pause(name: str, seconds: float = 10) -> None:
            os.killpg(servers[name].pid, signal.SIGSTOP)
            time.sleep(seconds)
            os.killpg(servers[name].pid, signal.SIGCONT)

        def restart(name: str, start: Callable[[], subprocess.Popen[bytes]]) -> None:
            stop(servers[name])
            time.sleep(10)
            servers[name] = start()

        console.print("fault: SIGKILL one ModelServer replica")
        fault = time.monotonic()
        os.kill(replica_pids()[0], signal.SIGKILL)
        time.sleep(1)
        observe("replica killed (SIGKILL)", fault, lambda: len(replica_pids()) >= 2)

        console.print("fault: MLflow server stopped, restarted 10 s later")
        fault = time.monotonic()
        restart("mlflow", lambda: start_mlflow(home, mlflow_port))
        observe("registry (MLflow) down 10 s", fault,
                lambda: all(not m["last_error"] for m in httpx.get(f"{base}/models").json()))  # fmt: skip

        console.print("fault: Chroma hung (SIGSTOP) for 10 s")
        fault = time.monotonic()
        pause("chroma")
        observe("Chroma hung 10 s", fault, lambda: answers(base) == "generated")

        console.print("fault: Chroma killed, restarted 10 s later")
        fault = time.monotonic()
        restart("chroma", lambda: start_chroma(home, chroma_port))
        observe("Chroma down 10 s", fault, lambda: answers(base) == "generated")

        console.print("fault: LLM endpoint stopped, restarted 10 s later")
        fault = time.monotonic()
        restart("llm", lambda: start_llm(home, llm_port))
        observe("LLM down 10 s", fault, lambda: answers(base) == "generated")

        console.print("fault: S3 hung (moto_server SIGSTOP) for 10 s")
        fault = time.monotonic()
        pause("s3")
        observe("S3 hung 10 s", fault, lambda: loads[2].samples[-1][2] == 201)
        stopping.set()
        thread.join(90)
    except BaseException:
        for process in servers.values():
            stop(process)
        raise
    finally:
        stopping.set()
        stop(platform, ray_dir)
        log.close()

    from deltalake import DeltaTable

    options = {"AWS_ENDPOINT_URL": s3, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-east-1"}  # fmt: skip
    stored = set(
        DeltaTable(f"s3://{BUCKET}/lake/bronze/feedback", storage_options=options)
        .to_pyarrow_table(columns=["event_id"]).column("event_id").to_pylist()
    )  # fmt: skip
    for process in servers.values():
        stop(process)
    report(rows, loads, args.clients, stored)


def report(
    rows: list[tuple[str, float, float]], loads: list[Load], clients: int, stored: set[str]
) -> None:
    table = Table(title=f"Faults under load: {clients} /predict + 2 RAG + 1 feedback clients, "
                        f"{os.cpu_count()} cores")  # fmt: skip
    for column in ("fault", "requests", "sent", "failed", "closed unanswered", "503 (Retry-After)", "degraded",
                   "recovery s", "p99 before ms", "p99 during ms", "p99 after ms"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("fault", "requests") else "right")
    for name, fault, recovered in rows:
        for load in loads:
            span = 300.0 if math.isnan(recovered) else max(recovered, 10)
            sent = load.window(fault, fault + span)
            failed = sum(1 for _, _, status, _, _ in sent if status not in (*OK, 503, -1))
            unanswered = sum(1 for _, _, status, _, _ in sent if status == -1)
            busy = [s for s in sent if s[2] == 503]
            degraded = sum(1 for s in sent if s[3])
            table.add_row(
                name, load.name, str(len(sent)), str(failed), str(unanswered),
                f"{len(busy)} ({sum(1 for s in busy if s[4])})", str(degraded), f"{recovered:.1f}",
                f"{p99_ms(load.window(fault - 10, fault)):.0f}",
                f"{p99_ms(load.window(fault, fault + 10)):.0f}",
                f"{p99_ms(load.window(fault + span, fault + span + 5)):.0f}",
            )  # fmt: skip
        table.add_section()
    Console(width=200).print(table)
    acknowledged = loads[2].acknowledged if loads else []
    lost = [event for event in acknowledged if event not in stored]
    Console().print(f"feedback: {len(acknowledged)} events acknowledged (201), "
                    f"{len(lost)} of them missing from bronze.feedback")  # fmt: skip


if __name__ == "__main__":
    main()
