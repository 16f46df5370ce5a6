"""The request log on the real platform: what Ray Serve answered lands in bronze, once in silver.

Mixed routes through real clients (httpx, the openai package), the X-Request-Id Ray Serve's proxy
returns, and the rows each replica's sink appends to the platform's Delta tables.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import httpx
import openai
import pandas as pd
import pytest

from lakehouse.requests import LIVE_ERROR, LOGS, PREDICTIONS, RAG_REQUESTS, refresh_silver
from lakehouse.seed import GOLD
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakehouse.trips.features import FEATURES
from lakehouse.trips.feed import live_trips, request_id
from rag.feedback import FEEDBACK
from tests.utils.cli import spawn
from tests.utils.platform import KEY, MODEL, Platform, clean_env

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {KEY}"}


def logged_ids(lake: Lakehouse, table: Any, ids: set[str]) -> list[dict[str, Any]]:
    if not lake.exists(table):
        return []
    rows = lake.read(table).to_pylist()
    return [r for r in rows if r["request_id"] in ids]


def wait_for(lake: Lakehouse, table: Any, ids: set[str], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while {r["request_id"] for r in logged_ids(lake, table, ids)} != ids:
        assert time.monotonic() < deadline, f"{table}: rows of some requests never arrived"
        time.sleep(1)


def test_mixed_requests_land_once_per_row_in_silver_joined_by_request_id(
    platform: Platform,
) -> None:
    lake = Lakehouse(LakehouseSettings(home=platform.home))
    frame = lake.read(GOLD).to_pandas()[FEATURES].head(40)
    records = frame.astype(object).to_dict("records")
    expected: dict[str, int] = {}  # request id -> rows it predicted (1 for a refused request)
    with httpx.Client(base_url=platform.url, headers=AUTH, timeout=60) as client:
        for i in range(12):
            body = {"dataframe_records": records[i : i + 1 + i % 3]}
            answer = client.post(f"/predict/{MODEL}", json=body)
            assert answer.status_code == 200
            expected[answer.headers["x-request-id"]] = len(body["dataframe_records"])
        inputs = client.get(f"/v2/models/{MODEL}").json()["inputs"]
        v2 = {"inputs": [
            {**tensor, "shape": [2], "data": frame[tensor["name"]].head(2).tolist()}
            for tensor in inputs
        ]}  # fmt: skip
        answer = client.post(
            f"/v2/models/{MODEL}/infer", json=v2, headers={"X-Request-Id": "mine-1"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-request-id"] == "mine-1"
        expected["mine-1"] = 2
        bad = client.post(
            f"/predict/{MODEL}", json={"dataframe_records": [{**records[0], "pickup_hour": "x"}]}
        )
        assert bad.status_code == 422
        expected[bad.headers["x-request-id"]] = 1
    assert len(expected) == 14

    wait_for(lake, PREDICTIONS, set(expected))
    bronze = logged_ids(lake, PREDICTIONS, set(expected))
    assert len(bronze) >= sum(expected.values())  # at least once
    refresh_silver(lake, LOGS[0])
    silver = logged_ids(lake, LOGS[0].silver, set(expected))
    assert Counter(r["request_id"] for r in silver) == Counter(expected)
    first = next(r for r in silver if r["request_id"] == "mine-1" and r["row"] == 1)
    assert first["features"] == {c: records[1][c] for c in FEATURES}
    assert first["endpoint"] == "v2_infer" and first["status"] == 200 and first["prediction"] > 0
    refused = next(r for r in silver if r["request_id"] == bad.headers["x-request-id"])
    assert (refused["status"], refused["error"], refused["prediction"]) == (
        422,
        "invalid_input",
        None,
    )


def test_a_chat_answer_its_rag_log_row_and_its_feedback_share_the_request_id(
    platform: Platform,
) -> None:
    client = openai.OpenAI(base_url=f"{platform.url}/v1", api_key=KEY, max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model="lakeserve-rag", messages=[{"role": "user", "content": "How do I pretty-print JSON?"}]
    )
    rid = raw.headers["x-request-id"]
    completion = raw.parse()
    feedback = httpx.post(
        f"{platform.url}/rag/feedback",
        headers=AUTH,
        json={"answer_id": completion.id, "rating": "up", "question": "How do I pretty-print JSON?",
              "answer": completion.choices[0].message.content, "request_id": rid},
    )  # fmt: skip
    assert feedback.status_code == 201, feedback.text
    lake = Lakehouse(LakehouseSettings(home=platform.home))
    wait_for(lake, RAG_REQUESTS, {rid})
    (row,) = logged_ids(lake, RAG_REQUESTS, {rid})
    assert row["endpoint"] == "chat" and row["status"] == 200
    assert row["retrieved_ids"] and row["query"] and row["timings_ms"]
    assert set(row["cited_ids"]) <= set(row["retrieved_ids"])
    joined = pd.DataFrame(lake.read(FEEDBACK).to_pylist()).merge(
        pd.DataFrame([row]), on="request_id"
    )
    assert joined["answer_id"].tolist() == [completion.id]


def test_the_live_feed_gives_live_error_for_the_served_version(platform: Platform) -> None:
    env = clean_env(LAKESERVE_HOME=str(platform.home), LAKESERVE_API_KEY=KEY)
    fed = spawn("lake", "feed", "--url", platform.url, "--model", MODEL, "--trips", "40",
                "--seed", "11", "--json", env=env)  # fmt: skip
    assert fed.code == 0, fed.err
    assert json.loads(fed.out)["statuses"] == {"200": 40}
    lake = Lakehouse(LakehouseSettings(home=platform.home))
    trips = live_trips(40, seed=11)
    wait_for(lake, PREDICTIONS, {request_id(t) for t in trips["trip_id"]})  # the sinks flushed
    built = spawn("lake", "requests", "--json", env=env)
    assert built.code == 0, built.err
    assert "gold.live_error" in {r["table"] for r in json.loads(built.out)}
    ids = {request_id(t) for t in trips["trip_id"]}
    versions = {r["version"] for r in logged_ids(lake, LOGS[0].silver, ids)}
    assert len(versions) == 1  # no rollout in between
    error = lake.read(LIVE_ERROR).to_pandas()
    mine = error[(error["model"] == MODEL) & (error["version"] == versions.pop())]
    assert mine["predictions"].sum() >= 40
    # A ridge model of this feed is off by a few dollars a trip, never by the fare itself.
    assert 0 < float(mine["mae"].iloc[-1]) < float(mine["mean_actual"].iloc[-1]) / 2


def test_values_outside_the_training_domain_are_warned_counted_and_logged(
    platform: Platform,
) -> None:
    lake = Lakehouse(LakehouseSettings(home=platform.home))
    row = lake.read(GOLD, columns=FEATURES).slice(0, 1).to_pylist()[0]
    hostile = {**row, "pickup_borough": "Atlantis", "passenger_count": 99, "pickup_hour": 30,
               "trip_distance": -5.0}  # fmt: skip
    counted = f'feature="pickup_borough",model="{MODEL}"'
    with httpx.Client(base_url=platform.url, headers=AUTH, timeout=60) as client:
        before = _count(client.get("/metrics").text, counted)
        answer = client.post(f"/predict/{MODEL}", json={"dataframe_records": [row, hostile]})
        after = _count(client.get("/metrics").text, counted)
    assert answer.status_code == 200, answer.text
    warned = {(w["row"], w["column"]) for w in answer.json()["warnings"]}
    bent = {"pickup_borough", "passenger_count", "pickup_hour", "trip_distance"}
    assert warned == {(1, column) for column in bent}
    assert after - before == 1
    rid = answer.headers["x-request-id"]
    wait_for(lake, PREDICTIONS, {rid})
    logged = sorted(logged_ids(lake, PREDICTIONS, {rid}), key=lambda r: r["row"])
    assert [r["out_of_domain"] for r in logged] == [[], sorted(bent)]


def _count(metrics: str, labels: str) -> float:
    lines = [line for line in metrics.splitlines() if labels in line and "_total{" in line]
    return float(lines[0].rsplit(" ", 1)[1]) if lines else 0.0


def _feed(platform: Platform, env: dict[str, str], day: int, shift: str) -> tuple[str, str]:
    """Send 400 live trips; return the window (ISO times) their logged rows fall in."""
    lake = Lakehouse(LakehouseSettings(home=platform.home))
    since = pd.Timestamp.now(tz="UTC").isoformat()
    fed = spawn("lake", "feed", "--url", platform.url, "--model", MODEL, "--trips", "400",
                "--seed", "21", "--day", str(day), "--shift", shift, "--json", env=env)  # fmt: skip
    assert fed.code == 0 and json.loads(fed.out)["statuses"] == {"200": 400}, fed.err
    trips = live_trips(400, seed=21, day=day, shift=shift)
    wait_for(lake, PREDICTIONS, {request_id(t) for t in trips["trip_id"]})
    return since, pd.Timestamp.now(tz="UTC").isoformat()


def test_monitor_logs_each_window_to_mlflow_and_exits_8_on_a_shift(platform: Platform) -> None:
    from mlflow.tracking import MlflowClient

    uri = platform.env["MLFLOW_TRACKING_URI"]
    env = clean_env(LAKESERVE_HOME=str(platform.home), LAKESERVE_API_KEY=KEY,
                    MLFLOW_TRACKING_URI=uri)  # fmt: skip
    client = MlflowClient(uri, uri)

    since, until = _feed(platform, env, day=3, shift="none")
    clean = spawn("monitor", "--model", MODEL, "--since", since, "--until", until, "--json",
                  env=env)  # fmt: skip
    assert clean.code == 0, clean.err
    result = json.loads(clean.out)
    assert result["measured"] and result["window"]["rows"] == 400 and result["alarms"] == []
    assert result["reference"]["matched_on"] == ["pickup_dow"]
    assert result["live_error"]["rows"] == 400  # the feed recorded every outcome
    run = client.get_run(result["run_id"])
    assert run.data.tags["model.version"] == result["version"]
    assert run.data.metrics["alarm"] == 0 and run.data.metrics["window_rows"] == 400
    artifacts = {a.path for a in client.list_artifacts(result["run_id"], "monitor")}
    assert artifacts == {"monitor/drift_report.html", "monitor/result.json"}
    version = client.get_model_version(MODEL, result["version"])
    assert version.tags["monitor.last_run"] == result["run_id"]
    assert version.tags["monitor.alarm"] == "false"

    since, until = _feed(platform, env, day=4, shift="borough")
    shifted = spawn("monitor", "--model", MODEL, "--since", since, "--until", until, env=env)
    assert shifted.code == 8, shifted.err
    assert "pickup_borough drifted: Jensen-Shannon distance" in shifted.err
    assert "Traceback" not in shifted.err
    tags = client.get_model_version(MODEL, result["version"]).tags
    assert tags["monitor.alarm"] == "true" and tags["monitor.last_run"] != result["run_id"]
    # As the loop's gate before retraining: a crossed threshold passes (0), nothing to do is 9.
    gate = spawn("monitor", "--model", MODEL, "--since", since, "--until", until, "--no-log",
                 "--retrain-gate", env=env)  # fmt: skip
    assert gate.code == 0 and "retrain: " in gate.err, gate.err
    assert "pickup_borough drifted" in gate.err and "pickup_hour" not in gate.err, gate.err

    empty = spawn("monitor", "--model", MODEL, "--since", "2020-01-01T00:00",
                  "--until", "2020-01-02T00:00", "--json", env=env)  # fmt: skip
    assert empty.code == 0 and json.loads(empty.out)["measured"] is False, empty.err
    idle = spawn("monitor", "--model", MODEL, "--since", "2020-01-01T00:00",
                 "--until", "2020-01-02T00:00", "--retrain-gate", env=env)  # fmt: skip
    assert idle.code == 9 and "nothing to retrain" in idle.err, idle.err
    unknown = spawn("monitor", "--model", "no-such-model", env=env)
    assert unknown.code == 3 and "no version of no-such-model holds @champion" in unknown.err
