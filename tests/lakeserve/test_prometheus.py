"""A real Prometheus (Debian's) scrapes a running platform with the project's scrape config and
rules: the recording rules evaluate, every alert rule is healthy, every dashboard query returns
data; the serving dashboard is rendered from what Prometheus stored (no Grafana is obtainable
here: the panels' queries are plotted) into test-artifacts/.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from lakeserve.observability import dashboards, rules
from tests.utils.chat import Chat, ask_and_rate, chromium, run_chat
from tests.utils.cli import spawn
from tests.utils.monitoring import query, run_prometheus, run_pushgateway, wait_for
from tests.utils.platform import KEY, MODEL, IndexEnv, Platform, clean_env, train

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
SCRAPE = ROOT / "k8s" / "base" / "platform" / "prometheus.yaml"
RULES = rules.RULES_FILE
ARTIFACTS = Path(os.environ.get("LAKESERVE_TEST_ARTIFACTS", "test-artifacts"))
INTERVAL = "2s"
ROW = {"trip_distance": 3.2, "passenger_count": 1, "pickup_hour": 8, "pickup_dow": 2,
       "is_weekend": False, "pickup_borough": "Manhattan", "dropoff_borough": "Brooklyn",
       "is_airport": False, "rate_code": "Standard"}  # fmt: skip


def scrape_configs() -> list[dict[str, Any]]:
    """The committed scrape jobs (the ConfigMap a cluster's Prometheus loads)."""
    docs = [d for d in yaml.safe_load_all(SCRAPE.read_text()) if d]
    [config] = [d for d in docs if d["kind"] == "ConfigMap"]
    return list(yaml.safe_load(config["data"]["scrape-configs.yaml"]))


def local_config(targets: dict[str, list[str]]) -> dict[str, Any]:
    """The committed jobs with static loopback targets in place of Kubernetes discovery.

    Only discovery changes (kubernetes_sd and the relabelling of its meta labels); the metric
    relabelling, honor_labels and paths are the committed ones.
    """
    jobs = []
    for job in scrape_configs():
        name = job["job_name"]
        assert name in targets, f"no local target for scrape job {name}"
        local = {
            k: v for k, v in job.items() if k not in ("kubernetes_sd_configs", "relabel_configs")
        }
        local["static_configs"] = [{"targets": targets[name]}]
        local["scrape_interval"] = INTERVAL
        jobs.append(local)
    return {"global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
            "scrape_configs": jobs}  # fmt: skip


@pytest.fixture(scope="module")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from run_pushgateway(tmp_path_factory.mktemp("pushgateway"))


@pytest.fixture(scope="module")
def chat(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chat]:
    yield from run_chat(tmp_path_factory.mktemp("chat-prom") / "chat.log", platform.url)


@pytest.fixture(scope="module")
def prometheus(
    platform: Platform, pushgateway: str, chat: Chat, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    # Ray's metrics agent serves every replica's series; the chat page serves its own.
    pods = [f"127.0.0.1:{platform.env['LAKESERVE_METRICS_PORT']}", chat.metrics_target]
    gateway = [pushgateway.removeprefix("http://")]
    targets = {"lakeserve-pods": pods, "lakeserve-pushgateway": gateway}
    config = local_config(targets)
    yield from run_prometheus(tmp_path_factory.mktemp("prometheus"), config, [RULES])


def run_jobs(platform: Platform, index: IndexEnv, pushgateway: str) -> None:
    """A training, a monitor window and an ingest, each pushing its outcome when it ends."""
    push = {"LAKESERVE_PUSHGATEWAY_URL": pushgateway}
    train(platform.home, platform.env["MLFLOW_TRACKING_URI"], "fare-prom", "fare-ridge.yaml",
          **push)  # fmt: skip
    env = clean_env(**{k: v for k, v in platform.env.items() if k.startswith("LAKESERVE_")},
                    MLFLOW_TRACKING_URI=platform.env["MLFLOW_TRACKING_URI"], **push)  # fmt: skip
    monitor = spawn("monitor", "--model", MODEL, "--since", "2h", "--min-rows", "20",
                    "--no-log", env=env)  # fmt: skip
    assert monitor.code in (0, 8), monitor.err[-2000:]
    # The platform's index as it is: a re-run that changes nothing, pushing what it found.
    ingest = spawn("rag", "ingest", "--executor", "local", env={**index.env, **push})
    assert ingest.code == 0, ingest.err[-2000:]


def predictions(platform: Platform) -> None:
    """~30 predictions, one of them refused (422) and one with a value outside the domain."""
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=platform.url, headers=auth, timeout=120) as client:
        for _ in range(30):
            assert client.post(f"/predict/{MODEL}", json={"inputs": [ROW]}).status_code == 200
        assert client.post(f"/predict/{MODEL}", json={"inputs": [{"x": 1}]}).status_code == 422
        outside = {**ROW, "pickup_borough": "Atlantis"}
        assert client.post(f"/predict/{MODEL}", json={"inputs": [outside]}).status_code == 200


def traffic(platform: Platform, chat: Chat) -> None:
    predictions(platform)
    auth = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=platform.url, headers=auth, timeout=120) as client:
        answer = client.post("/rag/query", json={"question": "How do I parse JSON?"})
        assert answer.status_code == 200, answer.text
        feedback = {"answer_id": f"prom-{time.time_ns()}", "rating": "up",
                    "question": "How do I parse JSON?", "answer": answer.json()["answer"],
                    "citations": []}  # fmt: skip
        assert client.post("/rag/feedback", json=feedback).status_code == 201
    with chromium() as browser:
        ask_and_rate(browser, chat, "How do I read a JSON file into a dict?")


@pytest.fixture(scope="module")
def stored(
    platform: Platform, full_index: IndexEnv, pushgateway: str, chat: Chat, prometheus: str
) -> str:
    """Prometheus after traffic and one run of each job; returns its URL."""
    traffic(platform, chat)
    run_jobs(platform, full_index, pushgateway)
    # The jobs take minutes on a busy machine: predictions again, so that the 5m windows the
    # assertions read hold some (a window without traffic has no ratio, by design).
    predictions(platform)
    # Ray's metrics agent exports what the replicas report every few seconds, and rate() needs
    # two samples of it: wait until Prometheus sees the last burst as a rate, not a fixed time.
    last = 'sum(rate(lakeserve_model_requests_total{route="predict",status_class="2xx"}[1m])) > 0'
    assert wait_for(prometheus, last, timeout_s=120), (
        "the last predictions never reached Prometheus"
    )
    time.sleep(6)  # a few rule evaluations (every 2 s) over those samples
    return prometheus


def test_every_scrape_target_is_up(stored: str) -> None:
    targets = httpx.get(f"{stored}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    assert targets and all(t["health"] == "up" for t in targets), [
        (t["labels"]["job"], t["health"], t["lastError"]) for t in targets
    ]


def test_every_rule_evaluates_without_error(stored: str) -> None:
    groups = httpx.get(f"{stored}/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = [r for g in groups for r in g["rules"]]
    assert len(loaded) == rules.count(), "Prometheus did not load every rule of the file"
    broken = [(r["name"], r.get("lastError")) for r in loaded if r["health"] != "ok"]
    assert not broken, broken


def test_recording_rules_have_values_from_the_platform(stored: str) -> None:
    empty = [name for name in rules.recorded() if not wait_for(stored, name, timeout_s=30)]
    assert not empty, f"recording rules without a value after traffic: {empty}"
    # The traffic had one 422 in ~30 predictions and no 5xx: no errors, and a request share.
    errors = query(stored, 'lakeserve:request_errors:ratio_rate5m{route="predict"}')
    rates = query(stored, 'lakeserve:requests:rate5m{route="predict"}')
    assert [float(e["value"][1]) for e in errors] == [0.0], rates
    assert {r["metric"]["status_class"] for r in rates} >= {"2xx", "4xx"}


def test_every_dashboard_query_returns_data(stored: str) -> None:
    # kube-state-metrics runs only in a cluster: its series are checked by name (test_dashboards)
    # and their alerts by promtool, never here.
    local = [q for q in dashboards.queries() if "kube_" not in q[2]]
    assert len(dashboards.queries()) - len(local) <= 2
    empty = [(board, title, expr) for board, title, expr in local if not wait_for(stored, expr, 10)]
    assert not empty, empty


def test_the_serving_dashboard_rendered_from_live_data(stored: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    panels: dict[str, list[str]] = {}
    for board, title, expr in dashboards.queries():
        if board == "serving":
            panels.setdefault(title, []).append(expr)
    end = time.time()
    columns = 3
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3.2 * rows), squeeze=False)
    drawn = set()
    for axis, (title, exprs) in zip(axes.flat, panels.items(), strict=False):
        for expr in exprs:
            response = httpx.get(
                f"{stored}/api/v1/query_range",
                params={"query": expr, "start": end - 300, "end": end, "step": "2s"},
                timeout=30,
            ).json()
            for series in response["data"]["result"]:
                xs = [float(t) - end for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                label = ",".join(f"{k}={v}" for k, v in series["metric"].items() if k != "__name__")
                axis.plot(xs, ys, label=(label or expr)[:48])
                drawn.add(expr)
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("seconds before now", fontsize=7)
        axis.legend(fontsize=6)
    figure.tight_layout()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / "dashboard-serving.png"
    figure.savefig(path, dpi=80)
    plt.close(figure)
    every = {expr for exprs in panels.values() for expr in exprs}
    assert drawn == every, sorted(every - drawn)
    assert path.stat().st_size > 20_000
