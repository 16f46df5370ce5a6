"""Traces of a RAG answer on the real platform: MLflow Tracing on the real MLflow server (found by
the request id, with its spans and the user's feedback, shown in the MLflow UI in a real browser)
and Ray Serve's OpenTelemetry spans from the ingress to the RagServer with ours inside.

The screenshot of the trace view goes to test-artifacts/ (LAKESERVE_TEST_ARTIFACTS to change it).
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import mlflow
import pytest
from mlflow.entities import Trace
from playwright.sync_api import expect

from rag.ratings import FEEDBACK_NAME
from rag.tracing import ANSWER_ID_TAG, OTEL_TRACE_TAG, REQUEST_ID_TAG, request_filter
from tests.utils.chat import chromium
from tests.utils.platform import KEY, Platform

pytestmark = pytest.mark.integration

ARTIFACTS = Path(os.environ.get("LAKESERVE_TEST_ARTIFACTS", "test-artifacts"))
EXPERIMENT = "lakeserve-rag"
QUESTION = "How do I pretty-print JSON with indentation?"
T = TypeVar("T")


def eventually(check: Callable[[], T | None], timeout_s: float = 30.0) -> T:
    """Return the first non-None result of `check`, polling until the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{check} gave nothing within {timeout_s}s")
        time.sleep(0.5)


@dataclass(frozen=True)
class Traced:
    """One answer given through the API and its MLflow trace."""

    request_id: str
    otel_trace_id: str
    client_span_id: str
    body: dict[str, Any]
    experiment_id: str
    trace: Trace
    tracking_uri: str


@pytest.fixture(scope="module")
def traced(platform: Platform) -> Traced:
    request_id = f"trace-test-{secrets.token_hex(6)}"
    otel_trace_id, client_span_id = secrets.token_hex(16), secrets.token_hex(8)
    # A sampled parent: Serve traces this request whatever its sampling ratio.
    headers = {
        "Authorization": f"Bearer {KEY}",
        "X-Request-Id": request_id,
        "traceparent": f"00-{otel_trace_id}-{client_span_id}-01",
    }
    response = httpx.post(
        f"{platform.url}/rag/query", json={"question": QUESTION}, headers=headers, timeout=180
    )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == request_id
    uri = platform.env["MLFLOW_TRACKING_URI"]
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    found = eventually(
        lambda: (
            client.search_traces(
                locations=[experiment.experiment_id],
                filter_string=request_filter(request_id),
            )
            or None
        )
    )
    assert len(found) == 1
    return Traced(
        request_id,
        otel_trace_id,
        client_span_id,
        response.json(),
        experiment.experiment_id,
        found[0],
        uri,
    )


def test_a_rag_answer_is_found_in_mlflow_by_its_request_id_with_its_spans(
    traced: Traced,
) -> None:
    trace, body = traced.trace, traced.body
    assert trace.info.client_request_id == traced.request_id
    assert trace.info.tags[REQUEST_ID_TAG] == traced.request_id
    assert trace.info.tags[ANSWER_ID_TAG] == body["id"]
    assert trace.info.tags[OTEL_TRACE_TAG] == traced.otel_trace_id
    spans = {span.name: span for span in trace.data.spans}
    assert {"rag_answer", "retrieve", "fuse", "generate"} <= set(spans)
    root = spans["rag_answer"]
    assert root.parent_id is None
    assert root.inputs == {"question": QUESTION}
    assert root.outputs["answer"] == body["answer"]
    assert [c["doc_id"] for c in root.outputs["citations"]] == [
        c["doc_id"] for c in body["citations"]
    ]
    for name in ("retrieve", "fuse", "generate"):
        assert spans[name].parent_id == root.span_id, name
    assert spans["retrieve"].span_type == "RETRIEVER"
    retrieved = {d["metadata"]["doc_id"] for d in spans["retrieve"].outputs}
    assert {c["doc_id"] for c in body["citations"]} <= retrieved
    fused = [d["metadata"]["doc_id"] for d in spans["fuse"].outputs]
    assert fused == [c["doc_id"] for c in body["citations"]]
    assert all(d["page_content"] for d in spans["fuse"].outputs)
    assert spans["generate"].span_type == "LLM"
    assert spans["generate"].outputs == body["answer"]
    assert spans["generate"].attributes["mode"] == body["mode"]


def test_feedback_on_an_answer_is_attached_to_its_trace(traced: Traced, platform: Platform) -> None:
    feedback = {
        "answer_id": traced.body["id"],
        "request_id": traced.request_id,
        "rating": "down",
        "comment": "cites the wrong function",
        "question": QUESTION,
        "answer": traced.body["answer"],
        "client": "chat",
    }
    response = httpx.post(
        f"{platform.url}/rag/feedback",
        json=feedback,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    client = mlflow.MlflowClient(traced.tracking_uri)

    def rated() -> Any:
        trace = client.get_trace(traced.trace.info.trace_id)
        named = [a for a in trace.info.assessments if a.name == FEEDBACK_NAME]
        return named or None

    [assessment] = eventually(rated)
    assert assessment.feedback.value is False
    assert assessment.rationale == "cites the wrong function"
    assert assessment.source.source_type == "HUMAN"
    assert assessment.source.source_id == "chat"
    assert assessment.metadata["event_id"] == response.json()["event_id"]


def test_the_mlflow_ui_shows_the_trace_with_its_spans(traced: Traced) -> None:
    trace_id = traced.trace.info.trace_id
    url = (
        f"{traced.tracking_uri}/#/experiments/{traced.experiment_id}/traces"
        f"?selectedEvaluationId={trace_id}&traceId={trace_id}"
    )
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        page.goto(url)
        try:
            for name in ("rag_answer", "retrieve", "fuse", "generate"):
                expect(page.get_by_text(name, exact=True).first).to_be_visible(timeout=60_000)
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "mlflow-rag-trace.png"), full_page=True)


def serve_spans(ray_dir: Path) -> Iterator[dict[str, Any]]:
    """Every span written to the Serve span files (JSON objects one after another: serving.tracing
    writes one a line)."""
    decoder = json.JSONDecoder()
    for path in (ray_dir / "session_latest" / "logs" / "serve" / "spans").glob("*.json"):
        text, at = path.read_text(), 0
        while (at := _skip_space(text, at)) < len(text):
            span, at = decoder.raw_decode(text, at)
            yield span


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def test_one_otel_trace_covers_the_ingress_the_rag_server_and_our_stages(
    traced: Traced, platform: Platform
) -> None:
    ray_dir = Path(platform.env["LAKESERVE_RAY_TMPDIR"])
    wanted = f"0x{traced.otel_trace_id}"

    def spans() -> dict[str, dict[str, Any]] | None:
        found = {s["name"]: s for s in serve_spans(ray_dir) if s["context"]["trace_id"] == wanted}
        return found if "rag.generate" in found else None

    found = eventually(spans, 15)
    by_id = {s["context"]["span_id"]: s for s in found.values()}

    def ancestors(span: dict[str, Any]) -> list[str]:
        names = []
        while (parent := by_id.get(span["parent_id"] or "")) is not None:
            names.append(parent["name"])
            span = parent
        return names

    # HAProxy forwards to the ingress replica directly (no proxy span): FastAPI's request span
    # is the platform's first, a child of the client's span from `traceparent`.
    ingress = found["POST /rag/query"]
    assert ingress["parent_id"] == f"0x{traced.client_span_id}"
    rag = found["replica_handle_request RagServer query"]
    assert rag["attributes"]["request_id"] == traced.request_id
    assert "rag.call query" in ancestors(rag)
    assert ancestors(rag)[-1] == "POST /rag/query"
    for stage in ("rag.retrieve", "rag.fuse", "rag.generate"):
        assert ancestors(found[stage])[:2] == ["rag.answer", rag["name"]], stage
    assert found["rag.answer"]["attributes"]["answer_id"] == traced.body["id"]
    assert found["rag.answer"]["attributes"]["request_id"] == traced.request_id
