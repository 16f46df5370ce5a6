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
