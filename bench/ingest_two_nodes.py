"""Ingest through a real two-node Ray cluster on one machine: head and worker in network namespaces.

Each node is a `ray start` in its own network namespace (its own IP on a veth pair), so Ray
sees two machines: two raylets, two object stores, objects moving over TCP between them. The
driver (`lakeserve rag ingest`, Ray Data executor) runs in the head's namespace with
LAKESERVE_RAY_ADDRESS set, exactly as in a cluster. The script prints where Ray placed the
embedding actors (one per node is what the ingest asks for: 2 CPUs each, a pool of
cluster CPUs / 2) and the chunks/s, beside a single-node local run of the same documents. The two
nodes share this machine's 2 cores, so the figure shows that the path scales out, not a speed-up.
Needs root (ip netns) and iproute2.

    .venv/bin/python bench/ingest_two_nodes.py [--docs 400] [--backend onnx]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

BIN = Path(sys.executable).parent
NODES = {"ls-head": "10.231.0.1", "ls-worker": "10.231.0.2"}
PORT = 6390
DASHBOARD = 8299  # the state API (where the actors ran) is served by the head's dashboard
console = Console(stderr=True)


def sh(*args: str, check: bool = True, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, check=False, capture_output=True, text=True, env=env)
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def in_ns(ns: str, *args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    return sh("ip", "netns", "exec", ns, *args, env=env, check=check)


def network_up() -> None:
    """Two namespaces joined by a veth pair: 10.231.0.1 (head) and 10.231.0.2 (worker)."""
    network_down()
    for ns in NODES:
        sh("ip", "netns", "add", ns)
        in_ns(ns, "ip", "link", "set", "lo", "up")
    sh("ip", "link", "add", "ls-veth-h", "type", "veth", "peer", "name", "ls-veth-w")
    for ns, dev in zip(NODES, ("ls-veth-h", "ls-veth-w"), strict=True):
        sh("ip", "link", "set", dev, "netns", ns)
        in_ns(ns, "ip", "addr", "add", f"{NODES[ns]}/24", "dev", dev)
        in_ns(ns, "ip", "link", "set", dev, "up")
    in_ns("ls-head", "ping", "-c", "1", "-W", "2", NODES["ls-worker"], check=False)


def network_down() -> None:
    for ns in NODES:
        sh("ip", "netns", "del", ns, check=False)


def ray_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKESERVE_", "RAY_"))}
    env |= {"RAY_AUTH_MODE": "disabled", "LAKESERVE_HOME": str(home),
            "PATH": f"{BIN}:{env.get('PATH', '')}"}  # fmt: skip
    return env


def cluster_up(env: dict[str, str], temp: Path) -> None:
    head, worker = NODES["ls-head"], NODES["ls-worker"]
    common = ["--num-cpus", "2", "--disable-usage-stats"]
    in_ns("ls-head", str(BIN / "ray"), "start", "--head", "--node-ip-address", head,
          "--port", str(PORT), "--include-dashboard", "true", "--dashboard-host", head,
          "--dashboard-port", str(DASHBOARD), "--temp-dir", str(temp),
          *common, env=env)  # fmt: skip
    in_ns("ls-worker", str(BIN / "ray"), "start", "--address", f"{head}:{PORT}",
          "--node-ip-address", worker, *common, env=env)  # fmt: skip


def cluster_pids() -> list[int]:
    """Processes of this cluster: each names its node's address (not `ray stop`: that stops
    every Ray on the machine)."""
    out = sh("pgrep", "-f", r"10\.231\.0\.[12]", check=False)
    return [int(pid) for pid in out.split() if int(pid) != os.getpid()]


def cluster_down() -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in cluster_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while cluster_pids() and time.monotonic() < deadline:
            time.sleep(0.2)


def nodes_and_actors(env: dict[str, str]) -> tuple[list[str], Counter[str]]:
    """The cluster's alive node IPs, and how many embedding actors ran on each."""
    code = (
        "import json, ray\n"
        "from ray.util.state import list_actors\n"
        f"ray.init(address='{NODES['ls-head']}:{PORT}', log_to_driver=False)\n"
        "nodes = {n['NodeID']: n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']}\n"
        f"address = 'http://{NODES['ls-head']}:{DASHBOARD}'\n"
        "actors = [a for a in list_actors(address=address, limit=1000, detail=True)\n"
        "          if 'EmbedBatch' in a.class_name]\n"
        "print(json.dumps({'nodes': sorted(nodes.values()),"
        " 'actors': [nodes.get(a.node_id, a.node_id) for a in actors]}))\n"
    )
    out = json.loads(in_ns("ls-head", str(BIN / "python"), "-c", code, env=env).splitlines()[-1])
    return out["nodes"], Counter(out["actors"])


def ingest(env: dict[str, str], backend: str, collection: str, address: str | None) -> Any:
    run_env = env | {"LAKESERVE_EMBEDDING_BACKEND": backend, "LAKESERVE_RAG_COLLECTION": collection}
    if address:
        run_env["LAKESERVE_RAY_ADDRESS"] = address
    else:
        run_env["LAKESERVE_RAY_TMPDIR"] = f"/tmp/lsr-one-{os.getpid()}"
    started = time.perf_counter()
    out = in_ns("ls-head", str(BIN / "lakeserve"), "rag", "ingest", "--json", env=run_env)
    return json.loads(out), time.perf_counter() - started


def seed(home: Path, docs: int) -> None:
    from lakehouse.docs.pipeline import GOLD
    from lakehouse.settings import LakehouseSettings
    from lakehouse.tables import Lakehouse

    env = ray_env(home)
    sh(str(BIN / "lakeserve"), "lake", "seed", "--only", "docs", env=env)
    lake = Lakehouse(LakehouseSettings(home=home))
    rows = lake.read(GOLD)
    rows = rows.slice(0, min(docs, rows.num_rows))
    lake.overwrite(GOLD, rows.to_batches(), rows.schema, metadata={"bench_docs": str(docs)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=400, help="Documents of gold.docs to ingest.")
    parser.add_argument("--backend", default="onnx", choices=["torch", "onnx", "onnx-int8"])
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("ip"):
        raise SystemExit("needs root and iproute2 (ip netns)")
    work = Path(tempfile.mkdtemp(prefix="ls-2nodes-"))
    home, temp = work / "home", Path(f"/tmp/lsr2-{os.getpid()}")
    env = ray_env(home)
    try:
        console.print(f"seeding {args.docs} documents under {home}")
        seed(home, args.docs)
        network_up()
        one, one_s = ingest(env, args.backend, "one-node", None)
        console.print(f"one node: {one['chunks_written']} chunks in {one_s:.1f}s")
        cluster_up(env, temp)
        two, two_s = ingest(env, args.backend, "two-nodes", f"{NODES['ls-head']}:{PORT}")
        nodes, actors = nodes_and_actors(env)
        table = Table(title=f"rag ingest, {args.docs} docs, {args.backend}, Ray Data executor")
        for column in ("cluster", "nodes", "embedding actors per node", "chunks", "seconds",
                       "chunks/s"):  # fmt: skip
            table.add_column(column)
        table.add_row("local Ray (one node)", "1", "1", str(one["chunks_written"]),
                      f"{one_s:.1f}", f"{one['chunks_written'] / one_s:.1f}")  # fmt: skip
        placed = ", ".join(f"{ip}: {n}" for ip, n in sorted(actors.items()))
        table.add_row("head + worker (netns)", str(len(nodes)), placed,
                      str(two["chunks_written"]), f"{two_s:.1f}",
                      f"{two['chunks_written'] / two_s:.1f}")  # fmt: skip
        Console(width=140).print(table)
        ok = len(nodes) == 2 and set(actors) == set(NODES.values())
        ok = ok and two["chunks_total"] == one["chunks_total"]
        Console().print_json(json.dumps({"nodes": nodes, "actors": dict(actors), "one_node_s": round(one_s, 1),
                          "two_nodes_s": round(two_s, 1), "chunks": two["chunks_total"],
                          "one_actor_per_node": ok}))  # fmt: skip
        if not ok:
            raise SystemExit("the embedding actors did not run one per node")
    finally:
        cluster_down()
        network_down()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
