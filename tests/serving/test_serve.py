"""The platform for real: `lakeserve serve` on Ray Serve, a real MLflow server, real clients."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import tritonclient.http as triton
from prometheus_client.parser import text_string_to_metric_families

from lakehouse.seed import GOLD
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakehouse.trips.features import FEATURES
from tests.utils import openapi
from tests.utils.platform import KEY, MODEL, Platform, train

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {KEY}"}


def auth() -> dict[str, str]:
    """A fresh header dict: tritonclient adds its binary-length header to the dict it is given."""
    return dict(AUTH)


@pytest.fixture(scope="module")
def home(platform: Platform) -> Path:
    return platform.home


@pytest.fixture(scope="module")
def rows(home: Path) -> pd.DataFrame:
    lake = Lakehouse(LakehouseSettings(home=home))
    frame = lake.dataset(GOLD).head(40, columns=FEATURES).to_pandas()
    for name in ("pickup_borough", "dropoff_borough", "rate_code"):
        frame[name] = frame[name].astype(object)
    return frame


def expected(mlflow_server: str, version: str, frame: pd.DataFrame) -> np.ndarray:
    mlflow.set_registry_uri(mlflow_server)
    mlflow.set_tracking_uri(mlflow_server)
    return np.asarray(mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}").predict(frame))


def triton_inputs(
    client: triton.InferenceServerClient, frame: pd.DataFrame, binary: bool
) -> list[triton.InferInput]:
    metadata = client.get_model_metadata(MODEL, headers=auth())
    dtypes = {
        "FP64": np.float64,
        "INT32": np.int32,
        "INT64": np.int64,
        "BOOL": np.bool_,
        "BYTES": object,
    }
    inputs = []
    for spec in metadata["inputs"]:
        tensor = triton.InferInput(spec["name"], [len(frame)], spec["datatype"])
        tensor.set_data_from_numpy(
            frame[spec["name"]].to_numpy().astype(dtypes[spec["datatype"]]), binary_data=binary
        )
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_infer_equals_mlflow_pyfunc(
    platform: Platform, rows: pd.DataFrame, mlflow_server: str, binary: bool
) -> None:
    client = triton.InferenceServerClient(url=f"127.0.0.1:{platform.port}")
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL, headers=auth())
    result = client.infer(
        MODEL,
        triton_inputs(client, rows, binary),
        outputs=[triton.InferRequestedOutput("predictions", binary_data=False)],
        headers=auth(),
        request_id="req-1",
    )
    response = result.get_response()
    assert response["model_name"] == MODEL and response["id"] == "req-1"
    np.testing.assert_allclose(
        result.as_numpy("predictions"),
        expected(mlflow_server, response["model_version"], rows),
        rtol=1e-12,
    )


def test_mlflow_payloads_get_the_same_predictions(
    platform: Platform, rows: pd.DataFrame, mlflow_server: str
) -> None:
    frame = rows.head(5)
    records = frame.to_dict(orient="records")
    bodies = [
        {"dataframe_split": frame.to_dict(orient="split", index=False)},
        {"dataframe_records": records},
        {"instances": records},
        {"inputs": frame.to_dict(orient="list")},
    ]
    for body in bodies:
        response = httpx.post(f"{platform.url}/predict/{MODEL}", json=body, headers=AUTH)
        assert response.status_code == 200, response.text
        version = response.headers["x-model-version"]
        assert response.json()["model_version"] == version
        np.testing.assert_allclose(
            response.json()["predictions"], expected(mlflow_server, version, frame), rtol=1e-12
        )


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        (f"/predict/{MODEL}", {"dataframe_records": [{"trip_distance": 1.0}]}, 422,
         "missing column(s) passenger_count, pickup_hour, pickup_dow, is_weekend, pickup_borough, "
         "dropoff_borough, is_airport, rate_code; the model takes " + ", ".join(FEATURES)),
        ("/predict/no-such-model", {"inputs": {"a": [1]}}, 404,
         f"model no-such-model is not hosted here; hosted: {MODEL}"),
        (f"/predict/{MODEL}", {"inputs": {}}, 422, "the batch is empty: send at least one row"),
        (f"/v2/models/{MODEL}/infer",
         {"inputs": [{"name": "trip_distance", "shape": [2], "datatype": "FP64", "data": [1.0]}]},
         400, "input trip_distance: shape [2] needs 2 values, got 1"),
        (f"/v2/models/{MODEL}/versions/999/infer",
         {"inputs": [{"name": "trip_distance", "shape": [1], "datatype": "FP64", "data": [1.0]}]},
         404, None),
    ],
)  # fmt: skip
def test_bad_input_over_http_gets_its_status_and_message(
    platform: Platform, path: str, body: dict[str, object], status: int, message: str | None
) -> None:
    response = httpx.post(f"{platform.url}{path}", json=body, headers=AUTH)
    assert response.status_code == status, response.text
    if message is not None:
        assert response.json()["error"] == message


def test_too_many_rows_and_oversized_body_are_413(platform: Platform, rows: pd.DataFrame) -> None:
    many = {"inputs": {k: v * 501 for k, v in rows.head(1).to_dict(orient="list").items()}}
    response = httpx.post(f"{platform.url}/predict/{MODEL}", json=many, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"] == "501 rows exceed the limit of 500 rows per request"
    huge = b'{"inputs": {"rate_code": ["' + b"x" * 70_000 + b'"]}}'
    response = httpx.post(f"{platform.url}/predict/{MODEL}", content=huge, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"] == f"body of {len(huge)} bytes exceeds the limit of 65536 bytes"


def test_api_key_is_required_except_for_health(platform: Platform, rows: pd.DataFrame) -> None:
    body = {"dataframe_records": rows.head(1).to_dict(orient="records")}
    missing = httpx.post(f"{platform.url}/predict/{MODEL}", json=body)
    assert missing.status_code == 401
    assert missing.json() == {
        "error": "missing or invalid API key: send Authorization: Bearer <key>",
        "type": "unauthorized",
    }
    wrong = httpx.post(
        f"{platform.url}/predict/{MODEL}", json=body, headers={"Authorization": "Bearer x"}
    )
    assert wrong.status_code == 401
    second = httpx.post(
        f"{platform.url}/predict/{MODEL}", json=body, headers={"Authorization": "Bearer other"}
    )
    assert second.status_code == 200
    assert httpx.get(f"{platform.url}/v2/health/live").status_code == 200
    assert httpx.get(f"{platform.url}/metrics").status_code == 401


def test_served_openapi_document_is_valid_and_every_ref_resolves(platform: Platform) -> None:
    # The document of the real platform: models, RAG, OpenAI and feedback routes together.
    spec = httpx.get(f"{platform.url}/openapi.json").json()
    openapi.check(spec)
    assert {"/predict/{name}", "/v1/chat/completions", "/rag/feedback"} <= set(spec["paths"])


def batch_counts(platform: Platform) -> tuple[float, float]:
    text = httpx.get(f"{platform.url}/metrics", headers=AUTH).text

    def total(metric: str) -> float:
        pattern = (
            rf'^lakeserve_model_batch_requests_{metric}{{model="{MODEL}",version="[^"]+"}} (\S+)$'
        )
        return sum(float(v) for v in re.findall(pattern, text, re.MULTILINE))

    return total("count"), total("sum")


def test_concurrent_requests_are_predicted_in_batches(
    platform: Platform, rows: pd.DataFrame
) -> None:
    batches_before, requests_before = batch_counts(platform)
    records = rows.head(1).to_dict(orient="records")

    async def burst() -> list[int]:
        async with httpx.AsyncClient(headers=AUTH, timeout=60) as client:
            calls = [
                client.post(f"{platform.url}/predict/{MODEL}", json={"dataframe_records": records})
                for _ in range(64)
            ]
            return [r.status_code for r in await asyncio.gather(*calls)]

    assert asyncio.run(burst()) == [200] * 64
    batches_after, requests_after = batch_counts(platform)
    assert requests_after - requests_before == 64
    assert batches_after - batches_before < 64  # several requests shared a model call


def test_alias_move_under_load_switches_version_with_zero_failures(
    platform: Platform, rows: pd.DataFrame, home: Path, mlflow_server: str
) -> None:
    body = {"dataframe_records": rows.head(2).to_dict(orient="records")}
    stop = threading.Event()
    seen: list[list[tuple[int, str]]] = [[] for _ in range(4)]

    def client(log: list[tuple[int, str]]) -> None:
        with httpx.Client(headers=AUTH, timeout=30) as http:
            while not stop.is_set():
                response = http.post(f"{platform.url}/predict/{MODEL}", json=body)
                log.append((response.status_code, response.headers.get("x-model-version", "")))

    threads = [threading.Thread(target=client, args=(log,)) for log in seen]
    for thread in threads:
        thread.start()
    try:
        before = httpx.get(f"{platform.url}/models", headers=AUTH).json()[0]["version"]
        promoted = train(
            home, mlflow_server, MODEL, "fare-hgb.yaml", "--set", "model.params.max_iter=60"
        )
        assert promoted["alias"] == "champion", promoted
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not any(
            v == promoted["version"] for log in seen for _, v in log[-5:]
        ):
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    statuses = [status for log in seen for status, _ in log]
    assert statuses and set(statuses) == {200}, (
        f"{len(statuses)} requests, statuses {set(statuses)}"
    )
    for log in seen:
        versions = [v for _, v in log]
        assert versions[0] == before
        assert versions[-1] == promoted["version"]
        switch = versions.index(promoted["version"])
        assert set(versions[switch:]) == {promoted["version"]}  # never flips back


def samples(text: str, prefix: str) -> dict[str, dict[str, float]]:
    """Samples named `prefix*` by replica (the tag Ray's export adds; "" on /metrics), summed
    by name, model, route (and code for requests)."""
    totals: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(prefix):
                continue
            labels = sample.labels
            name = sample.name.removeprefix("ray_")
            key = f"{name}|{labels.get('model', '')}|{labels.get('route', '')}"
            if name.startswith("lakeserve_model_requests"):
                key += f"|{labels.get('code', '')}"
            if prefix.startswith("ray_"):  # Serve's tags on every exported series
                assert "replica" in labels and "deployment" in labels, sample
            replica = totals.setdefault(labels.get("replica", ""), {})
            replica[key] = replica.get(key, 0.0) + sample.value
    return totals


def test_replica_metrics_reach_rays_export_where_prometheus_scrapes(
    platform: Platform, rows: pd.DataFrame
) -> None:
    # The test platform runs one ModelServer replica: its /metrics must reappear in Ray's export
    # of the node as that replica's series (replicas replaced earlier keep series of their own).
    exported_url = f"http://127.0.0.1:{platform.env['LAKESERVE_METRICS_PORT']}/metrics"
    keys = [
        f"lakeserve_model_requests_total|{MODEL}|predict|200",
        f"lakeserve_model_requests_total|{MODEL}|predict|422",
        f"lakeserve_model_request_duration_seconds_count|{MODEL}|predict",
    ]
    records = rows.head(2).to_dict(orient="records")
    with httpx.Client(base_url=platform.url, headers=AUTH, timeout=60) as client:
        before = samples(client.get("/metrics").text, "lakeserve_")[""].get(keys[0], 0.0)
        codes = [
            client.post(f"/predict/{MODEL}", json={"dataframe_records": body}).status_code
            for body in [records] * 7 + [[{"x": 1}]]
        ]
        local = samples(client.get("/metrics").text, "lakeserve_")[""]
    assert codes == [200] * 7 + [422]
    assert local[keys[0]] - before == 7
    wanted = {key: local[key] for key in keys}
    deadline = time.monotonic() + 60
    while True:
        exported = samples(httpx.get(exported_url, timeout=10).text, "ray_lakeserve_")
        live = [r for r in exported.values() if {k: r.get(k) for k in keys} == wanted]
        if live or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert live, (wanted, {replica: [r.get(k) for k in keys] for replica, r in exported.items()})
    assert live[0][f"lakeserve_model_loaded|{MODEL}|"] >= 1
