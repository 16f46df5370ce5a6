"""The OpenAPI document is the API reference: valid, every $ref resolving, real error shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakeserve.api.app import create_app
from rag.feedback import FeedbackStore
from tests.utils import openapi
from tests.utils.fakes import FakeRag, fake_host


@pytest.fixture
def spec(tmp_path: Path) -> dict[str, Any]:
    host, _ = fake_host()
    store = FeedbackStore(Lakehouse(LakehouseSettings(home=tmp_path)))
    app = create_app(host, api_keys=["k"], rag=FakeRag([]), feedback=store)
    with TestClient(app) as client:
        document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def body_schema(spec: dict[str, Any], path: str) -> dict[str, Any]:
    content = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
    schema: dict[str, Any] = content["schema"]
    return schema


def test_document_is_valid_and_every_ref_resolves(spec: dict[str, Any]) -> None:
    openapi.check(spec)
    assert {"/v2/models/{name}/infer", "/predict/{name}", "/rag/feedback"} <= set(spec["paths"])


def test_a_dangling_ref_is_caught(spec: dict[str, Any]) -> None:
    del spec["components"]["schemas"]["TensorIn"]
    assert openapi.unresolved(spec) == ["#/components/schemas/TensorIn"]


def test_bodies_the_routes_read_themselves_are_described(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    infer = body_schema(spec, "/v2/models/{name}/infer")
    assert infer == {"$ref": "#/components/schemas/InferRequest"}
    assert schemas["InferRequest"]["properties"]["inputs"]["items"] == {
        "$ref": "#/components/schemas/TensorIn"
    }
    predict = body_schema(spec, "/predict/{name}")
    assert predict == {"$ref": "#/components/schemas/InvocationRequest"}
    formats = [one["required"] for one in schemas["InvocationRequest"]["oneOf"]]
    assert formats == [["dataframe_split"], ["dataframe_records"], ["instances"], ["inputs"]]
    for path, model in (
        ("/rag/query", "QueryRequest"),
        ("/rag/feedback", "FeedbackRequest"),
        ("/v1/chat/completions", "ChatCompletionRequest"),
    ):
        assert body_schema(spec, path) == {"$ref": f"#/components/schemas/{model}"}
    assert schemas["QueryRequest"]["properties"]["k"]["anyOf"][0]["maximum"] == 20


def error_ref(spec: dict[str, Any], path: str, method: str, status: str) -> str:
    response = spec["paths"][path][method]["responses"][status]
    return str(response["content"]["application/json"]["schema"]["$ref"])


def test_errors_are_documented_in_the_shape_each_route_answers_with(spec: dict[str, Any]) -> None:
    body = "#/components/schemas/ErrorBody"
    openai_body = "#/components/schemas/OpenAIErrorBody"
    assert error_ref(spec, "/predict/{name}", "post", "422") == body
    assert error_ref(spec, "/v2/models/{name}/infer", "post", "413") == body
    assert error_ref(spec, "/rag/query", "post", "503") == body
    assert error_ref(spec, "/v1/chat/completions", "post", "422") == openai_body
    assert error_ref(spec, "/v1/chat/completions", "post", "401") == openai_body
    assert error_ref(spec, "/v1/models", "get", "500") == openai_body
    # FastAPI's own validation-error schema is never advertised: our handler answers instead.
    assert "HTTPValidationError" not in spec["components"]["schemas"]
