"""A redeploy under load: streams in flight end with their finish and predictions do not fail.

`lakeserve serve` redeploys its config file on SIGHUP; a changed runtime_env makes Serve replace
every replica (ModelServer and RagServer), each old one draining before it stops. Chat streams
and /predict requests run back to back from start to finish of the rollout.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from lakehouse.seed import GOLD
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakehouse.trips.features import FEATURES
from tests.utils.platform import KEY, MODEL, Platform, wait_for_rag

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {KEY}"}
QUESTION = "How do I parse a JSON string?"


def stopped_outdated(ray_dir: str) -> set[str]:
    """Deployments whose outdated replicas the Serve controller has started stopping."""
    logs = Path(ray_dir, "session_latest", "logs", "serve").glob("controller_*.log")
    lines = [
        line
        for path in logs
        for line in path.read_text(errors="replace").splitlines()
        if "with outdated versions" in line
    ]
    return {n for n in ("ModelServer", "RagServer") if any(f"name='{n}'" in x for x in lines)}


def stream_once(client: openai.OpenAI) -> tuple[list[Any], float, float]:
    """Return the chunks of one streamed answer, and when it started and ended.

    The openai client retries a request whose connection closed before any answer (what a
    proxy reload can do to a kept-alive connection); a stream cut after it began raises.
    """
    started = time.monotonic()
    stream = client.chat.completions.create(
        model="lakeserve-rag", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    chunks = list(stream)
    return chunks, started, time.monotonic()


def test_redeploy_drains_streams_to_done_and_fails_no_prediction(platform: Platform) -> None:
    row = Lakehouse(LakehouseSettings(home=platform.home)).dataset(GOLD).head(1, columns=FEATURES)
    body = {"dataframe_records": json.loads(row.to_pandas().to_json(orient="records"))}
    config_path = Path(platform.env["LAKESERVE_SERVE_CONFIG"])
    ray_dir = platform.env["LAKESERVE_RAY_TMPDIR"]
    assert not stopped_outdated(ray_dir)
    stop = threading.Event()
    streams: list[tuple[list[Any], float, float]] = []
    predictions: list[int] = []
    problems: list[str] = []

    def chat() -> None:
        client = openai.OpenAI(base_url=f"{platform.url}/v1", api_key=KEY, timeout=180)
        while not stop.is_set():
            try:
                streams.append(stream_once(client))
            except (openai.OpenAIError, httpx.HTTPError) as exc:
                problems.append(f"stream {time.monotonic():.1f}: {type(exc).__name__}: {exc}")

    def predict() -> None:
        with httpx.Client(headers=AUTH, timeout=60) as http:
            while not stop.is_set():
                try:
                    response = http.post(f"{platform.url}/predict/{MODEL}", json=body)
                    predictions.append(response.status_code)
                except httpx.HTTPError as exc:
                    problems.append(f"predict {time.monotonic():.1f}: {type(exc).__name__}: {exc}")
                time.sleep(0.05)

    threads = [threading.Thread(target=chat) for _ in range(2)]
    threads.append(threading.Thread(target=predict))
    for thread in threads:
        thread.start()
    try:
        time.sleep(3)
        config = yaml.safe_load(config_path.read_text())
        runtime_env = config["applications"][0].setdefault("runtime_env", {})
        runtime_env.setdefault("env_vars", {})["LAKESERVE_ROLLOUT"] = "2"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        sighup = time.monotonic()
        platform.process.send_signal(signal.SIGHUP)
        deadline = sighup + 300
        while stopped_outdated(ray_dir) != {"ModelServer", "RagServer"}:
            assert time.monotonic() < deadline, "the rollout did not replace the replicas"
            time.sleep(1)
        replaced = time.monotonic()
        # Old replicas drain the streams they hold, then stop; new ones answer the next.
        while sum(1 for _, started, _ in streams if started > replaced) < 2:
            assert time.monotonic() < deadline, f"no answers after the rollout: {problems[:3]}"
            time.sleep(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=200)
    wait_for_rag(platform.url)
    # The platform is shared: the next tests find every model loaded on the new replica.
    deadline = time.monotonic() + 120
    while httpx.get(f"{platform.url}/v2/health/ready", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "models not loaded after the rollout"
        time.sleep(0.5)

    assert not problems, (sighup, replaced, problems[:5])
    # Streams that were in flight while old replicas were told to stop, and all others,
    # ended with the finish chunk and [DONE].
    assert any(started < replaced < ended for _, started, ended in streams)
    for chunks, _, _ in streams:
        # The finish chunk (with how the answer was made) comes last, right before [DONE].
        last = chunks[-1]
        assert last.choices[0].finish_reason == "stop", last
        assert last.model_extra and last.model_extra["mode"] in ("generated", "quoted_fallback")
    assert predictions and set(predictions) == {200}, (
        f"{len(predictions)} predictions, statuses {sorted(set(predictions))}"
    )
