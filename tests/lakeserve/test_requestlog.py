"""The request log in process: the real app and real Delta tables, fake models and a fake LLM.

What lands in bronze for each route and outcome, the request id that joins it with responses and
feedback, sampling, silver's deduplication, and a lakehouse that is down costing rows, never
requests. The platform test (tests/serving/test_serve.py) checks the same through Ray Serve.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from fastapi.testclient import TestClient

from lakehouse.requests import LOGS, PREDICTIONS, RAG_REQUESTS, refresh_silver
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakeserve.api.app import create_app
from lakeserve.api.requestlog import (
    RequestIdMiddleware,
    RequestLog,
    _outputs,
    clean_id,
    ray_middlewares,
)
from rag.chain import RagChain
from rag.feedback import FEEDBACK, FeedbackStore
from rag.service import RagService
from rag.settings import RagSettings
from serving.options import RequestLogOptions
from tests.utils.cli import spawn
from tests.utils.fakes import ROW, FixedRetriever, RecordingChatModel, fake_host, hit
from tests.utils.platform import clean_env

FAST = {"flush_s": 0.2, "batch_rows": 50, "drain_s": 10}


def platform(
    tmp_path: Path, models: list[dict[str, Any]] | None = None, **log: Any
) -> tuple[TestClient, RequestLog, Lakehouse]:
    options = {"models": models or [{"name": "fare"}], "alias_poll_interval_s": 3600}
    host, _ = fake_host(options, version="3")
    lake = Lakehouse(LakehouseSettings(home=tmp_path / "home"))
    requests = RequestLog(lake, RequestLogOptions(**{**FAST, **log}), host.metrics)
    rag = RagService(RagSettings(home=tmp_path / "home", answer_mode="generated"))
    llm = RecordingChatModel(responses=["Parse it with json.loads [2]."] * 10)
    rag.chain = RagChain(
        FixedRetriever([hit("json.dumps", "dumps"), hit("json.loads", "loads")]), llm
    )
    rag.detail = None
    app = create_app(host, rag=rag, feedback=FeedbackStore(lake), request_log=requests)
    return TestClient(app), requests, lake


def rows(lake: Lakehouse, table: Any) -> list[dict[str, Any]]:
    return sorted(lake.read(table).to_pylist(), key=lambda r: (r["request_id"], r.get("row", 0)))


def test_each_route_and_outcome_lands_once_with_typed_inputs_and_the_response_id(
    tmp_path: Path,
) -> None:
    client, _, lake = platform(tmp_path)
    two = {"dataframe_records": [ROW, {**ROW, "trip_distance": 10.0, "passenger_count": 1}]}
    v2 = {
        "inputs": [
            {"name": k, "shape": [1], "datatype": t, "data": [ROW[k]]}
            for k, t in (("trip_distance", "FP64"), ("passenger_count", "INT32"),
                         ("is_airport", "BOOL"), ("rate_code", "BYTES"))
        ]
    }  # fmt: skip
    with client:
        ok = client.post("/predict/fare", json=two)
        mine = client.post("/v2/models/fare/infer", json=v2, headers={"X-Request-Id": "client-7"})
        bad = client.post("/predict/fare", json={"dataframe_records": [{**ROW, "rate_code": 5}]})
        unknown = client.post("/predict/nope", json=two)
        garbage = client.post("/predict/fare", content=b"{not json")
    assert [r.status_code for r in (ok, mine, bad, unknown, garbage)] == [200, 200, 422, 404, 400]
    ids = [r.headers["x-request-id"] for r in (ok, mine, bad, unknown, garbage)]
    assert ids[1] == "client-7" and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids[::2])
    assert len(set(ids)) == 5

    logged = rows(lake, PREDICTIONS)  # the drain on shutdown wrote everything
    by_id = {i: [r for r in logged if r["request_id"] == i] for i in ids}
    assert [len(by_id[i]) for i in ids] == [2, 1, 1, 1, 1]
    first, second = by_id[ids[0]]
    assert (first["row"], second["row"]) == (0, 1)
    assert second["features"] == {**ROW, "trip_distance": 10.0, "passenger_count": 1}
    assert second["prediction"] == 21.0 and first["prediction"] == ok.json()["predictions"][0]
    assert (first["model"], first["version"], first["endpoint"], first["status"]) == (
        "fare", "3", "predict", 200,
    )  # fmt: skip
    assert by_id["client-7"][0]["endpoint"] == "v2_infer"
    failed = [by_id[i][0] for i in ids[2:]]
    assert [(r["status"], r["error"], r["prediction"]) for r in failed] == [
        (422, "invalid_input", None), (404, "not_found", None), (400, "malformed_request", None),
    ]  # fmt: skip
    assert failed[1]["model"] == "nope" and failed[1]["features"] is None
    schema = lake.open(PREDICTIONS).schema().to_arrow()
    features = pa.schema(schema).field("features").type
    assert {f.name: str(f.type) for f in features} == {
        "trip_distance": "double", "passenger_count": "int32", "is_airport": "bool",
        "rate_code": "string",
    }  # fmt: skip
    assert lake.open(PREDICTIONS).metadata().partition_columns == ["date"]


def test_silver_keeps_one_row_per_request_and_row_when_an_append_landed_twice(
    tmp_path: Path,
) -> None:
    client, _, lake = platform(tmp_path)
    with client:
        for n in range(7):
            client.post("/predict/fare", json={"dataframe_records": [ROW] * (n % 3 + 1)})
    bronze = lake.read(PREDICTIONS)
    assert bronze.num_rows == 7 // 3 * 6 + 1  # 1+2+3 rows per 3 requests, then 1
    # At least once: a retried append whose first commit landed writes the same rows again.
    lake.append(PREDICTIONS, bronze.slice(0, 5), metadata={"source": "retry"}, merge_schema=True)
    predictions = LOGS[0]
    built = refresh_silver(lake, predictions)
    assert built is not None and (built.bronze_rows, built.rows) == (
        bronze.num_rows + 5,
        bronze.num_rows,
    )
    silver = lake.read(predictions.silver)
    keys = set(zip(silver["request_id"].to_pylist(), silver["row"].to_pylist(), strict=True))
    assert len(keys) == silver.num_rows == bronze.num_rows
    # The CLI the loop runs: nothing to do on unchanged bronze; a SQL count agrees with silver.
    env = clean_env(LAKESERVE_HOME=str(tmp_path / "home"))
    result = spawn("lake", "requests", "--json", env=env)
    assert result.code == 0, result.err
    assert [(r["table"], r["rows"], r["skipped"]) for r in json.loads(result.out)] == [
        ("silver.predictions", bronze.num_rows, True)
    ]
    distinct = "SELECT count(DISTINCT request_id) AS n FROM silver.predictions"
    counted = spawn("lake", "sql", "--json", distinct, env=env)
    assert json.loads(counted.out) == [{"n": 7}], counted.err


def test_sampling_is_per_model_and_zero_turns_a_models_log_off(tmp_path: Path) -> None:
    models: list[dict[str, Any]] = [{"name": "fare"}, {"name": "ghost", "log_sample": 0}]
    client, requests, lake = platform(tmp_path, models)
    with client:
        for _ in range(5):
            assert (
                client.post("/predict/fare", json={"dataframe_records": [ROW]}).status_code == 200
            )
            client.post("/predict/ghost", json={"dataframe_records": [ROW]})  # 503: not loaded
    assert {r["model"] for r in rows(lake, PREDICTIONS)} == {"fare"}
    assert len(rows(lake, PREDICTIONS)) == 5
    half = RequestLog(
        lake, RequestLogOptions(), requests.metrics, sample=iter([0.2, 0.7] * 50).__next__
    )
    assert [half.sampled(0.5) for _ in range(4)] == [True, False, True, False]
    assert not RequestLog(lake, RequestLogOptions(enabled=False), requests.metrics).sampled(1.0)


def test_rag_answers_are_logged_with_query_sources_citations_and_timings(tmp_path: Path) -> None:
    client, _, lake = platform(tmp_path)
    question = "How do I parse a JSON string?"
    chat = {"model": "lakeserve-rag", "messages": [{"role": "user", "content": question}]}
    with client:
        query = client.post("/rag/query", json={"question": question})
        completion = client.post("/v1/chat/completions", json=chat)
        with client.stream("POST", "/v1/chat/completions", json={**chat, "stream": True}) as s:
            streamed = "".join(s.iter_text())
        wrong = client.post("/v1/chat/completions", json={**chat, "model": "gpt-4"})
        rid = completion.headers["x-request-id"]
        feedback = client.post(
            "/rag/feedback",
            json={"answer_id": completion.json()["id"], "rating": "up", "question": question,
                  "answer": "a", "request_id": rid},
        )  # fmt: skip
    assert [query.status_code, completion.status_code, wrong.status_code] == [200, 200, 404]
    assert "[DONE]" in streamed and feedback.status_code == 201
    logged = rows(lake, RAG_REQUESTS)
    assert len(logged) == 4
    answered = {r["endpoint"]: r for r in logged if r["status"] == 200}
    assert set(answered) == {"rag_query", "chat", "chat_stream"}
    for endpoint, row in answered.items():
        assert row["question"] == question and row["query"] == question
        assert row["retrieved_ids"] == ["json.dumps", "json.loads"]
        assert row["cited_ids"] == ["json.loads"], endpoint
        assert row["found"] is True and row["mode"] == "generated"
        assert "retrieve_ms" in dict(row["timings_ms"]) and row["answer_chars"] > 0
    refused = [r for r in logged if r["status"] == 404]
    assert [(r["endpoint"], r["error"]) for r in refused] == [("chat", "not_found")]
    assert answered["chat"]["request_id"] == rid
    stored = lake.read(FEEDBACK).to_pylist()
    assert [r["request_id"] for r in stored] == [rid]


class DownLake(Lakehouse):
    """A lakehouse whose appends fail like an S3 that is unreachable."""

    down = True

    def append(self, *args: Any, **kwargs: Any) -> int:
        if self.down:
            raise OSError("connection refused")
        return super().append(*args, **kwargs)


def test_a_lakehouse_that_is_down_costs_counted_rows_never_a_request(tmp_path: Path) -> None:
    host, _ = fake_host({"models": [{"name": "fare"}], "alias_poll_interval_s": 3600}, "3")
    lake = DownLake(LakehouseSettings(home=tmp_path / "home"))
    options = RequestLogOptions(flush_s=0.05, batch_rows=4, max_queue=10, drain_s=1)
    requests = RequestLog(lake, options, host.metrics)
    client = TestClient(create_app(host, request_log=requests))
    with client:
        answers = [
            client.post("/predict/fare", json={"dataframe_records": [ROW]}) for _ in range(40)
        ]
        assert all(a.status_code == 200 for a in answers)
        requests.report()
        metrics = client.get("/metrics").text
    dropped = counter(metrics, "dropped")
    # The writer holds one batch (4) while it retries, the queue 10 more: the rest are dropped.
    assert 40 - 4 - 10 <= dropped <= 40 - 10
    stats = requests.close()["bronze.predictions"]
    assert stats.written == 0 and stats.dropped + stats.lost == 40 and stats.dropped == dropped


def counter(metrics: str, outcome: str) -> float:
    table = 'table="bronze.predictions"'
    pattern = rf'lakeserve_request_log_events_total\{{outcome="{outcome}",{table}\}} (\S+)'
    found = re.search(pattern, metrics)
    return float(found.group(1)) if found else 0.0


def test_the_request_log_is_json_safe_for_predictions_that_are_not_one_number() -> None:
    assert _outputs(np.array([1, 2]), 2) == [{"prediction": 1.0}, {"prediction": 2.0}]
    two = _outputs(np.array([[0.1, 0.9], [0.5, 0.5]]), 2)
    assert two is not None and json.loads(two[0]["prediction_json"]) == [0.1, 0.9]
    assert _outputs(np.array(["a", "b"]), 2) == [
        {"prediction_json": '"a"'}, {"prediction_json": '"b"'},
    ]  # fmt: skip
    assert _outputs(np.array([1.0]), 2) is None


def test_a_client_request_id_is_cleaned_to_printable_ascii_of_200_chars() -> None:
    assert clean_id("req-1") == "req-1"
    assert clean_id("r" * 300) == "r" * 200
    assert clean_id("réq 1\t") == "rq1"
    assert clean_id("réq".encode()) == "rq"  # raw UTF-8 header bytes
    assert clean_id("ü") is None and clean_id(None) is None


def test_the_response_carries_the_request_id_the_app_logged(tmp_path: Path) -> None:
    client, _, lake = platform(tmp_path)
    with client:
        long = client.post(
            "/rag/query", json={"question": "q"}, headers={"X-Request-Id": "x" * 300}
        )
        unusable = client.post(
            "/rag/query", json={"question": "q"}, headers={b"X-Request-Id": b"\xc3\xbc"}
        )
    assert long.headers["x-request-id"] == "x" * 200
    assert re.fullmatch(r"[0-9a-f]{32}", unusable.headers["x-request-id"])
    assert len(unusable.headers.get_list("x-request-id")) == 1
    logged = {r["request_id"] for r in rows(lake, RAG_REQUESTS)}
    assert logged == {"x" * 200, unusable.headers["x-request-id"]}


def test_ray_gets_the_cleaning_middleware_without_a_second_response_header() -> None:
    [middleware] = ray_middlewares()
    assert middleware.cls is RequestIdMiddleware and middleware.kwargs == {"respond": False}
