"""The serving API over a fake registry: routes, status codes and exact error bodies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lakeserve.api.app import create_app
from serving.host import ModelHost
from tests.utils.fakes import ROW, FakeRegistry, fake_host

OPTIONS = {
    "models": [{"name": "fare"}, {"name": "ghost"}],
    "max_rows_per_request": 5,
    "max_body_bytes": 2048,
    "alias_poll_interval_s": 3600,
}


def make_client(keys: list[str] | None = None) -> tuple[TestClient, FakeRegistry, ModelHost]:
    host, registry = fake_host(OPTIONS, version="3")
    return TestClient(create_app(host, api_keys=keys)), registry, host


@pytest.fixture
def client() -> Iterator[TestClient]:
    test_client, _, _ = make_client()
    with test_client:
        yield test_client


def v2_inputs(row: dict[str, Any]) -> list[dict[str, Any]]:
    types = {float: "FP64", int: "INT32", bool: "BOOL", str: "BYTES"}
    return [
        {"name": k, "shape": [1], "datatype": types[type(v)], "data": [v]} for k, v in row.items()
    ]


def error(response: Any) -> tuple[int, dict[str, Any]]:
    return response.status_code, response.json()


def test_predict_with_each_mlflow_format_gives_the_same_answer(client: TestClient) -> None:
    rows = [ROW, {**ROW, "trip_distance": 10.0}]
    bodies = [
        {"dataframe_split": {"columns": list(ROW), "data": [list(r.values()) for r in rows]}},
        {"dataframe_records": rows},
        {"instances": rows},
        {"inputs": {k: [r[k] for r in rows] for k in ROW}},
    ]
    for body in bodies:
        response = client.post("/predict/fare", json=body)
        assert response.status_code == 200, response.text
        assert response.json() == {"predictions": [8.0, 22.0], "model_version": "3"}
        assert response.headers["x-model-version"] == "3"


def test_v2_infer_returns_outputs_with_model_version_and_id(client: TestClient) -> None:
    response = client.post("/v2/models/fare/infer", json={"id": "r1", "inputs": v2_inputs(ROW)})
    assert response.status_code == 200
    assert response.json() == {
        "model_name": "fare",
        "model_version": "3",
        "id": "r1",
        "outputs": [{"name": "predictions", "shape": [1], "datatype": "FP64", "data": [8.0]}],
    }


def test_v2_metadata_lists_typed_inputs(client: TestClient) -> None:
    body = client.get("/v2/models/fare").json()
    assert body["versions"] == ["3"]
    assert body["inputs"][0] == {"name": "trip_distance", "datatype": "FP64", "shape": [-1]}
    assert [i["datatype"] for i in body["inputs"]] == ["FP64", "INT32", "BOOL", "BYTES"]
    assert client.get("/v2/models/fare/versions/3").status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"dataframe_records": [{**ROW, "rate_code": 1}]}, 422,
         "column rate_code: expected string, got int 1 at row 0"),
        ({"dataframe_records": [{**ROW, "trip_distance": "far"}]}, 422,
         "column trip_distance: expected double, got str 'far' at row 0"),
        ({"dataframe_records": [{**ROW, "passenger_count": 1.5}]}, 422,
         "column passenger_count: expected integer, got 1.5 at row 0"),
        ({"dataframe_records": [{**ROW, "trip_distance": None}]}, 422,
         "column trip_distance: expected double, got null at row 0"),
        ({"dataframe_records": [{k: v for k, v in ROW.items() if k != "rate_code"}]}, 422,
         "missing column(s) rate_code; the model takes trip_distance, passenger_count, "
         "is_airport, rate_code"),
        ({"dataframe_records": [{**ROW, "tolls": 1.0}]}, 422,
         "unknown column(s) tolls; the model takes trip_distance, passenger_count, "
         "is_airport, rate_code"),
        ({"dataframe_records": []}, 422, "the batch is empty: send at least one row"),
        ({"dataframe_records": [ROW] * 6}, 413, "6 rows exceed the limit of 5 rows per request"),
        ({"rows": [ROW]}, 400, "body must have exactly one of dataframe_split, "
         "dataframe_records, instances, inputs (and optionally params); found rows"),
        ({"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}}, 400,
         "dataframe_split.data row 0 must be a list of 1 values"),
    ],
)  # fmt: skip
def test_bad_predict_input_gets_its_status_and_message(
    client: TestClient, body: dict[str, Any], status: int, message: str
) -> None:
    response = client.post("/predict/fare", json=body)
    assert error(response) == (status, {"error": message, "type": response.json()["type"]})
    expected_type = {400: "malformed_request", 413: "payload_too_large", 422: "invalid_input"}
    assert response.json()["type"] == expected_type[status]


@pytest.mark.parametrize(
    ("inputs", "status", "message"),
    [
        ([{"name": "trip_distance", "shape": [2], "datatype": "FP64", "data": [1.0]}], 400,
         "input trip_distance: shape [2] needs 2 values, got 1"),
        ([{"name": "trip_distance", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}], 400,
         "input trip_distance: shape [1, 3] is not a column; use [rows] or [rows, 1]"),
        ([{"name": "trip_distance", "shape": [1], "datatype": "FP128", "data": [1]}], 400,
         "input trip_distance: unknown datatype FP128; use one of BOOL, UINT8, UINT16, UINT32, "
         "UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES"),
        ([{"name": "trip_distance", "shape": [1], "datatype": "FP64", "data": ["x"]}], 400,
         "input trip_distance: FP64 data holds 'x' at row 0"),
        ([], 400, "invalid inference request at inputs: List should have at least 1 item "
         "after validation, not 0"),
    ],
)  # fmt: skip
def test_bad_v2_input_gets_its_status_and_message(
    client: TestClient, inputs: list[dict[str, Any]], status: int, message: str
) -> None:
    response = client.post("/v2/models/fare/infer", json={"inputs": inputs})
    assert response.status_code == status
    assert response.json()["error"] == message


def test_unknown_model_is_404_and_unserved_version_is_404(client: TestClient) -> None:
    assert error(client.post("/predict/nope", json={"dataframe_records": [ROW]})) == (
        404,
        {"error": "model nope is not hosted here; hosted: fare, ghost", "type": "not_found"},
    )
    response = client.post("/v2/models/fare/versions/2/infer", json={"inputs": v2_inputs(ROW)})
    assert error(response) == (
        404,
        {
            "error": "model fare version 2 is not served; @champion is version 3",
            "type": "not_found",
        },
    )


def test_model_not_loaded_yet_is_503_and_server_is_not_ready(client: TestClient) -> None:
    response = client.post("/predict/ghost", json={"dataframe_records": [ROW]})
    assert response.status_code == 503
    assert response.json()["error"].startswith("model ghost is not loaded yet: KeyError")
    assert client.get("/v2/models/ghost/ready").status_code == 503
    assert client.get("/v2/models/fare/ready").json() == {"name": "fare", "ready": True}
    assert client.get("/v2/health/ready").status_code == 503
    assert client.get("/v2/health/live").json() == {"live": True}


def test_version_readiness_is_404_for_a_version_not_served(client: TestClient) -> None:
    assert client.get("/v2/models/fare/versions/3/ready").json() == {"name": "fare", "ready": True}
    for version in ("0", "2", "%20"):
        response = client.get(f"/v2/models/fare/versions/{version}/ready")
        assert response.status_code == 404, response.text
        assert "is not served; @champion is version 3" in response.json()["error"]
    assert client.get("/v2/models/ghost/versions/1/ready").status_code == 503  # not loaded yet


def test_oversized_body_is_413_and_malformed_json_is_400(client: TestClient) -> None:
    big = json.dumps({"dataframe_records": [{**ROW, "rate_code": "x" * 3000}]}).encode()
    response = client.post("/predict/fare", content=big)
    assert error(response) == (
        413,
        {
            "error": f"body of {len(big)} bytes exceeds the limit of 2048 bytes",
            "type": "payload_too_large",
        },
    )
    response = client.post("/predict/fare", content=b"{oops")
    assert response.status_code == 400
    assert response.json()["error"].startswith("body is not valid JSON")


def test_auth_requires_a_bearer_key_except_on_health() -> None:
    test_client, _, _ = make_client(keys=["s3cret", "other"])
    with test_client as client:
        body = {"dataframe_records": [ROW]}
        assert error(client.post("/predict/fare", json=body)) == (
            401,
            {
                "error": "missing or invalid API key: send Authorization: Bearer <key>",
                "type": "unauthorized",
            },
        )
        wrong = {"Authorization": "Bearer nope"}
        assert client.post("/predict/fare", json=body, headers=wrong).status_code == 401
        assert client.get("/metrics").status_code == 401
        good = {"Authorization": "Bearer other"}
        assert client.post("/predict/fare", json=body, headers=good).status_code == 200
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").status_code == 503  # ghost is not loaded


def test_alias_move_swaps_the_version_and_a_registry_outage_keeps_serving() -> None:
    test_client, registry, host = make_client()
    with test_client as client:
        registry.aliases[("fare", "champion")] = "4"
        asyncio.run(host.refresh())
        assert client.post("/predict/fare", json={"inputs": [ROW]}).json()["model_version"] == "4"
        registry.fail = True
        asyncio.run(host.refresh())
        response = client.post("/predict/fare", json={"inputs": [ROW]})
        assert response.status_code == 200 and response.json()["model_version"] == "4"
        models = {m["name"]: m for m in client.get("/models").json()}
        assert models["fare"]["last_error"] == "ConnectionError: registry unreachable"
    assert registry.loads.count(("fare", "4")) == 1


def test_metrics_count_requests_by_status_and_never_label_unknown_names(client: TestClient) -> None:
    client.post("/predict/fare", json={"inputs": [ROW]})
    client.post("/predict/fare", json={"inputs": []})
    client.post("/predict/made-up-name", json={"inputs": [ROW]})
    text = client.get("/metrics").text
    assert (
        'lakeserve_model_requests_total{code="200",model="fare",route="predict",'
        'status_class="2xx",version="3"} 1.0' in text
    )
    assert (
        'lakeserve_model_requests_total{code="422",model="fare",route="predict",'
        'status_class="4xx",version="none"} 1.0' in text
    )
    assert 'code="404",model="_unknown"' in text
    assert "made-up-name" not in text
    assert 'lakeserve_model_loaded{model="fare",version="3"} 1.0' in text
    assert 'lakeserve_model_ready{model="fare"} 1.0' in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b'\xff\xfe{"a": 1}', "body is not valid JSON"),
        (b'{"inputs": "\xff\xfe"}', "body is not valid JSON: UnicodeDecodeError"),
        (b"[" * 2000, "body is not valid JSON: RecursionError"),
    ],
)
def test_undecodable_json_is_400_not_500(client: TestClient, content: bytes, message: str) -> None:
    for path in ("/predict/fare", "/v2/models/fare/infer"):
        response = client.post(path, content=content)
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"].startswith(message)


def test_integers_outside_the_signature_type_are_422(client: TestClient) -> None:
    body = {"dataframe_records": [{**ROW, "passenger_count": 3_000_000_000}]}
    assert error(client.post("/predict/fare", json=body)) == (
        422,
        {
            "error": "column passenger_count: 3000000000 at row 0 is outside the integer range "
            "[-2147483648, 2147483647]",
            "type": "invalid_input",
        },
    )


HUGE = "9" * 400


@pytest.mark.parametrize(
    ("column", "literal", "message"),
    [
        ("trip_distance", "Infinity", "inf at row 0 is not a finite number"),
        ("trip_distance", "-Infinity", "-inf at row 0 is not a finite number"),
        ("trip_distance", "1e400", "inf at row 0 is not a finite number"),
        ("trip_distance", "NaN", "missing value at row 0"),
        ("trip_distance", HUGE, "99999999999999999999... (400 digits) at row 0 is outside the"),
        ("passenger_count", HUGE, "99999999999999999999... (400 digits) at row 0 is outside the"),
        ("passenger_count", "Infinity", "inf at row 0 is not a finite number"),
        ("passenger_count", "2.5", "expected integer, got 2.5 at row 0"),
    ],
)
def test_numbers_json_allows_but_a_column_cannot_hold_are_422_naming_it(
    client: TestClient, column: str, literal: str, message: str
) -> None:
    # Raw JSON text: Python's parser accepts Infinity, NaN and integers of any length.
    values = {k: json.dumps(v) for k, v in ROW.items()} | {column: literal}
    record = "{" + ", ".join(f'"{k}": {v}' for k, v in values.items()) + "}"
    predict = f'{{"dataframe_records": [{json.dumps(ROW)}, {record}]}}'
    types = {"trip_distance": "FP64", "passenger_count": "INT32", "is_airport": "BOOL"}
    tensors = ", ".join(
        f'{{"name": "{k}", "shape": [1], "datatype": "{types.get(k, "BYTES")}", "data": [{v}]}}'
        for k, v in values.items()
    )
    v2 = f'{{"inputs": [{tensors}]}}'
    for path, body, row in (("/predict/fare", predict, 1), ("/v2/models/fare/infer", v2, 0)):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, (path, response.text)
        expected = f"column {column}: " + message.replace("row 0", f"row {row}")
        assert response.json()["error"].startswith(expected), (path, response.text)


def test_bad_binary_data_size_is_400(client: TestClient) -> None:
    header = json.dumps(
        {"inputs": [{"name": "trip_distance", "shape": [1], "datatype": "FP64",
                     "parameters": {"binary_data_size": "x"}}]}
    ).encode()  # fmt: skip
    response = client.post(
        "/v2/models/fare/infer",
        content=header + b"\x00" * 8,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert error(response) == (
        400,
        {
            "error": "input trip_distance: binary_data_size must be a non-negative integer",
            "type": "malformed_request",
        },
    )


def test_a_chunked_body_over_the_limit_is_413_without_reading_it_all(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"inputs": {"rate_code": ["'
        for _ in range(100):
            yield b"x" * 1024  # far past the 2048-byte limit
        yield b'"]}}'

    response = client.post("/predict/fare", content=chunks())
    assert error(response) == (
        413,
        {"error": "body exceeds the limit of 2048 bytes", "type": "payload_too_large"},
    )


def test_a_version_swapped_in_while_queued_does_not_answer_requests_checked_before() -> None:
    test_client, registry, host = make_client()
    with test_client:
        slot = host.slot("fare")
        old = slot.current
        assert old is not None
        rows = old.schema.check({k: [v] for k, v in ROW.items()}, 5)
        registry.aliases[("fare", "champion")] = "4"
        asyncio.run(host.refresh())
        assert slot.current is not None and slot.current.version == "4"
        [outcome] = slot.predict_batch([(old, rows)])
        assert isinstance(outcome, tuple)
        predictions, version = outcome
        assert version == "3" and list(predictions) == [8.0]


HOSTILE = {"trip_distance": -5.0, "passenger_count": 99, "is_airport": False, "rate_code": "X"}


def test_values_outside_the_training_domain_are_answered_with_warnings_and_counted(
    client: TestClient,
) -> None:
    answer = client.post("/predict/fare", json={"dataframe_records": [ROW, HOSTILE]})
    assert answer.status_code == 200
    body = answer.json()
    assert body["predictions"] == [8.0, 89.0]  # still answered: the model decides nothing here
    assert [(w["row"], w["column"], w["value"]) for w in body["warnings"]] == [
        (1, "trip_distance", -5.0),
        (1, "passenger_count", 99),
        (1, "rate_code", "X"),
    ]
    assert body["warnings"][2]["message"] == (
        "column rate_code: 'X' at row 1 is outside the training domain (one of JFK, Standard)"
    )
    inside = client.post("/predict/fare", json={"dataframe_records": [ROW]}).json()
    assert "warnings" not in inside
    v2 = client.post("/v2/models/fare/infer", json={"inputs": v2_inputs(HOSTILE)}).json()
    assert v2["parameters"] == {
        "out_of_domain_values": 3,
        "out_of_domain_columns": "trip_distance,passenger_count,rate_code",
    }
    text = client.get("/metrics").text
    counted = (
        "lakeserve_model_out_of_domain_values_total"
        '{feature="passenger_count",model="fare",version="3"}'
    )
    assert f"{counted} 2.0" in text
    assert 'feature="is_airport"' not in text


def test_a_strict_model_refuses_values_outside_its_domain_with_422_naming_them() -> None:
    options = {**OPTIONS, "models": [{"name": "fare", "strict_domain": True}]}
    host, _ = fake_host(options, version="3")
    with TestClient(create_app(host)) as client:
        refused = client.post("/predict/fare", json={"dataframe_records": [ROW, HOSTILE]})
        v2 = client.post("/v2/models/fare/infer", json={"inputs": v2_inputs(HOSTILE)})
        fine = client.post("/predict/fare", json={"dataframe_records": [ROW]})
    assert refused.status_code == 422 and v2.status_code == 422
    message = refused.json()["error"]
    assert message.startswith("column trip_distance: -5.0 at row 1 is outside the training domain")
    assert "'X' at row 1" in message and "is strict about its training domain" in message
    assert fine.status_code == 200 and fine.json()["predictions"] == [8.0]


def test_a_model_logged_without_a_domain_is_served_without_checks() -> None:
    host, registry = fake_host(OPTIONS, version="3")
    registry.domain = None
    with TestClient(create_app(host)) as client:
        answer = client.post("/predict/fare", json={"dataframe_records": [HOSTILE]})
    assert answer.status_code == 200 and "warnings" not in answer.json()
