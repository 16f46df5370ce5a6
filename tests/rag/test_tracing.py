"""Traces of RAG answers in process: OpenTelemetry spans (in-memory exporter), MLflow traces on a
sqlite tracking store, feedback attached, and MLflow down costing no answer; request ids in logs.

The retriever is the real HybridRetriever over embedded Chroma (a fake embedding function: no
model download); the real platform is tested in tests/rag/test_tracing_serve.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from fastapi.testclient import TestClient
from langchain_core.embeddings import DeterministicFakeEmbedding
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kernel.logs import LogSettings, configure_logging
from kernel.settings import TrackingSettings
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakeserve.api.app import create_app
from rag.chain import RagChain
from rag.feedback import FeedbackStore
from rag.retrieval import HybridRetriever, Tuning
from rag.schemas import ChatCompletionChunk, ChatCompletionRequest, FeedbackRequest, QueryRequest
from rag.service import RagService
from rag.settings import RagSettings
from rag.store import Index
from rag.tracing import ANSWER_ID_TAG, FEEDBACK_NAME, AnswerTracer, FeedbackTraces
from tests.utils.fakes import FakeRag, RecordingChatModel, chunk, fake_host
from tests.utils.processes import free_port

DOCS = {
    "json.dumps": "json.dumps(obj, indent=None)\nSerialize obj to a JSON formatted str.",
    "json.loads": "json.loads(s)\nDeserialize s (a str holding a JSON document) to an object.",
    "shlex.split": "shlex.split(s)\nSplit the string s using shell-like syntax.",
}
QUESTION = "How do I serialize an object to JSON?"


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """The process's tracer provider (set once, as Ray Serve does) exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture
def settings(tmp_path: Path) -> RagSettings:
    return RagSettings(home=tmp_path, rag_collection="traced-docs")


@pytest.fixture
def service(settings: RagSettings) -> RagService:
    """A service over three documents in embedded Chroma, quoted answers (no LLM)."""
    index = Index.open(settings, create=True)
    embeddings = DeterministicFakeEmbedding(size=16)
    texts = list(DOCS.values())
    index.upsert(
        [f"{doc}::0000" for doc in DOCS],
        embeddings.embed_documents(texts),
        texts,
        [{"doc_id": doc, "title": doc, "chunk_index": 0} for doc in DOCS],
    )
    # Fake vectors have arbitrary similarities: no relevance floor.
    retriever = HybridRetriever(index, embeddings, Tuning(min_similarity=-1.0))
    retriever.refresh()
    rag = RagService(settings)
    rag.chain = RagChain(retriever, None, k=2)
    rag.detail = None
    return rag


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TrackingSettings]:
    """A sqlite tracking store under tmp_path (MLflow's global URI restored after)."""
    previous = mlflow.get_tracking_uri()
    store = TrackingSettings(home=tmp_path / "mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    yield store
    mlflow.set_tracking_uri(previous)


def by_name(finished: tuple[ReadableSpan, ...]) -> dict[str, ReadableSpan]:
    return {span.name: span for span in finished}


def test_an_answer_is_one_span_tree_retrieve_fuse_generate_under_the_request(
    service: RagService, spans: InMemorySpanExporter
) -> None:
    spans.clear()
    tracer = trace.get_tracer("test")
    with tracer.start_as_current_span("replica_handle_request RagServer query") as request:
        answer = asyncio.run(service.query(QueryRequest(question=QUESTION), request_id="req-1"))
    found = by_name(spans.get_finished_spans())
    assert {"rag.answer", "rag.retrieve", "rag.fuse", "rag.generate"} <= set(found)
    root = found["rag.answer"]
    assert root.parent is not None and root.parent.span_id == request.get_span_context().span_id
    for name in ("rag.retrieve", "rag.fuse", "rag.generate"):
        span = found[name]
        assert span.context.trace_id == request.get_span_context().trace_id
        assert span.parent is not None and span.parent.span_id == root.context.span_id, name
    assert root.attributes is not None and root.attributes["request_id"] == "req-1"
    assert root.attributes["answer_id"] == answer.id and answer.id.startswith("rag-")
    assert root.attributes["mode"] == "quoted" and root.attributes["found"] is True
    retrieve = dict(found["rag.retrieve"].attributes or {})
    assert retrieve["vector_hits"] == 3 and retrieve["bm25_hits"] == 2  # json.*: "JSON"
    assert dict(found["rag.fuse"].attributes or {})["found"] is True
    generate = found["rag.generate"]
    assert generate.attributes is not None and generate.attributes["mode"] == "quoted"
    assert generate.start_time is not None
    assert generate.start_time >= found["rag.fuse"].end_time  # type: ignore[operator]


def test_an_answer_is_an_mlflow_trace_with_documents_answer_and_request_id(
    service: RagService, tracking: TrackingSettings, spans: InMemorySpanExporter
) -> None:
    service.tracer = AnswerTracer(service.settings, tracking)
    assert service.tracer.connect()
    spans.clear()
    answer = asyncio.run(service.query(QueryRequest(question=QUESTION), request_id="req-2"))
    [traced] = mlflow.search_traces(
        locations=[str(service.tracer.experiment_id)],
        filter_string="trace.client_request_id = 'req-2'",
        return_type="list",
        flush=True,
    )
    assert traced.info.client_request_id == "req-2"
    assert traced.info.tags[ANSWER_ID_TAG] == answer.id
    otel_id = format(by_name(spans.get_finished_spans())["rag.answer"].context.trace_id, "032x")
    assert traced.info.tags["lakeserve.otel_trace_id"] == otel_id
    assert traced.info.tags["lakeserve.mode"] == "quoted"
    named = {span.name: span for span in traced.data.spans}
    assert set(named) == {"rag_answer", "retrieve", "fuse", "generate"}
    root = named["rag_answer"]
    assert root.parent_id is None and root.inputs == {"question": QUESTION}
    assert root.outputs["answer"] == answer.answer
    assert all(named[n].parent_id == root.span_id for n in ("retrieve", "fuse", "generate"))
    assert named["retrieve"].span_type == "RETRIEVER"
    assert named["retrieve"].inputs["query"] == QUESTION
    retrieved = named["retrieve"].outputs
    assert {d["metadata"]["doc_id"] for d in retrieved} == set(DOCS)
    assert all(d["page_content"] == DOCS[d["metadata"]["doc_id"]] for d in retrieved)
    fused = [d["metadata"]["doc_id"] for d in named["fuse"].outputs]
    assert fused == [c.doc_id for c in answer.citations] and len(fused) == 2
    assert named["generate"].span_type == "LLM"
    assert named["generate"].outputs == answer.answer
    assert named["generate"].inputs["sources"] == fused

    trace_id = FeedbackTraces(service.settings, tracking, wait_s=5).attach(
        FeedbackRequest(
            answer_id=answer.id, rating="up", comment="spot on", question=QUESTION, answer="a"
        ),
        event_id="evt-1",
    )
    assert trace_id == traced.info.trace_id
    [feedback] = [a for a in mlflow.get_trace(trace_id).info.assessments if a.name == FEEDBACK_NAME]
    assert feedback.feedback.value is True
    assert feedback.rationale == "spot on"
    assert feedback.source.source_type == "HUMAN" and feedback.source.source_id == "api"
    assert feedback.metadata == {"event_id": "evt-1", "rating": "up"}


def test_mlflow_unreachable_costs_no_answer_and_no_feedback(
    service: RagService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    down = TrackingSettings(home=tmp_path, tracking_timeout_s=0.5)
    service.tracer = AnswerTracer(service.settings, down)
    started = time.monotonic()
    assert service.tracer.connect() is False
    answer = asyncio.run(service.query(QueryRequest(question=QUESTION), request_id="req-3"))
    assert answer.found and answer.answer
    feedback = FeedbackRequest(answer_id=answer.id, rating="down", question="q", answer="a")
    assert FeedbackTraces(service.settings, down, wait_s=1).attach(feedback, "evt-2") is None
    assert time.monotonic() - started < 5


def test_every_log_line_of_a_request_carries_its_request_id(
    service: RagService, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(LogSettings(format="json"))
    # In process: the service's own lines (an LLM down, answered from the sources).
    assert service.chain is not None
    service.chain = RagChain(
        service.chain.retriever, RecordingChatModel(responses=[], fail=True), k=2
    )
    asyncio.run(service.query(QueryRequest(question=QUESTION), request_id="req-4"))
    # Through the ingress app: a stream failing midway logs its error inside the response body.
    host, _ = fake_host()
    app = create_app(host, rag=FakeRag([chunk(1), RuntimeError("boom")]))
    body = {"model": "lakeserve-rag", "messages": [{"role": "user", "content": "hi"}]}
    with TestClient(app) as client:
        response = client.post(
            "/v1/chat/completions", json={**body, "stream": True}, headers={"X-Request-Id": "r-5"}
        )
    assert response.status_code == 200 and "boom" not in response.text
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    degraded = [e for e in lines if e["event"] == "LLM failed, answering from the sources"]
    assert degraded and all(e["request_id"] == "req-4" for e in degraded)
    assert degraded[0]["answer_id"].startswith("rag-")
    failed = [e for e in lines if e["event"] == "stream failed"]
    assert [e["request_id"] for e in failed] == ["r-5"]


def test_a_streamed_answer_is_traced_under_its_completion_id(
    service: RagService, tracking: TrackingSettings
) -> None:
    service.tracer = AnswerTracer(service.settings, tracking)
    assert service.tracer.connect()
    request = ChatCompletionRequest(
        model="lakeserve-rag", messages=[{"role": "user", "content": QUESTION}], stream=True
    )

    async def collect() -> list[ChatCompletionChunk]:
        return [c async for c in service.chat_stream(request, request_id="req-6")]

    chunks = asyncio.run(collect())
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    [traced] = mlflow.search_traces(
        locations=[str(service.tracer.experiment_id)],
        filter_string="trace.client_request_id = 'req-6'",
        return_type="list",
        flush=True,
    )
    assert traced.info.tags[ANSWER_ID_TAG] == chunks[0].id
    assert traced.info.tags["lakeserve.endpoint"] == "chat_stream"
    named = {span.name: span for span in traced.data.spans}
    assert set(named) == {"rag_answer", "retrieve", "fuse", "generate"}
    assert named["generate"].outputs == text.strip()
    assert named["rag_answer"].outputs["answer"] == text.strip()


def test_feedback_is_201_when_mlflow_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    traces = FeedbackTraces(RagSettings(home=tmp_path), TrackingSettings(tracking_timeout_s=0.5))
    host, _ = fake_host()
    store = FeedbackStore(Lakehouse(LakehouseSettings(home=tmp_path)))
    app = create_app(host, rag=FakeRag([]), feedback=store, feedback_traces=traces)
    event = {"answer_id": "chatcmpl-1", "rating": "up", "question": "q", "answer": "a"}
    with TestClient(app) as client:
        started = time.monotonic()
        response = client.post("/rag/feedback", json=event)
        assert response.status_code == 201, response.text
        assert time.monotonic() - started < 2  # the attach runs after the response
        pending = list(app.state.background)
    assert response.json()["answer_id"] == "chatcmpl-1"
    assert all(task.done() for task in pending)
