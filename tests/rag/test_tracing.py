"""Traces of RAG answers in process: OpenTelemetry spans (in-memory exporter), MLflow traces on a
sqlite tracking store (also with an OTLP endpoint set), feedback attached, and MLflow down
costing no answer; clean request ids in logs, responses and traces.

The retriever is the real HybridRetriever over embedded Chroma (a fake embedding function: no
model download); the real platform is tested in tests/rag/test_tracing_serve.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import mlflow
import mlflow.tracing.provider
import pytest
import structlog
from fastapi.testclient import TestClient
from langchain_core.embeddings import DeterministicFakeEmbedding
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from kernel.logs import LogSettings, configure_logging
from kernel.settings import TrackingSettings
from lakeserve.api.app import create_app
from rag.api import RagHandle
from rag.chain import RagChain
from rag.ratings import FEEDBACK_NAME, FeedbackTraces
from rag.retrieval import SNIPPET_CHARS, HybridRetriever, Tuning
from rag.schemas import ChatCompletionChunk, ChatCompletionRequest, FeedbackRequest, QueryRequest
from rag.service import RagService
from rag.settings import RagSettings
from rag.store import Index
from rag.tracing import (
    ANSWER_ID_TAG,
    REQUEST_ID_TAG,
    AnswerTrace,
    AnswerTracer,
    request_filter,
)
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
    """A tracer provider exporting to memory, set globally as Ray Serve does; the process's
    previous one is put back after (OpenTelemetry allows one global set: its private globals)."""
    exporter = InMemorySpanExporter()
    previous, once = trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = None, type(once)()
    trace.set_tracer_provider(provider)
    yield exporter
    provider.shutdown()
    trace._TRACER_PROVIDER, trace._TRACER_PROVIDER_SET_ONCE = previous, once


@pytest.fixture
def json_logs() -> Iterator[None]:
    """JSON log lines (kernel.logs), the previous logging configuration restored after."""
    config = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(LogSettings(format="json"))
    yield
    structlog.configure(**config)
    root.handlers[:] = handlers
    root.setLevel(level)


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
    assert traced.info.tags[REQUEST_ID_TAG] == "req-2"
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
    assert all(d["metadata"]["title"] == d["metadata"]["doc_id"] for d in retrieved)
    # Candidates are described by a snippet; the fused sources keep what the LLM was given.
    assert all(
        d["page_content"] == DOCS[d["metadata"]["doc_id"]][:SNIPPET_CHARS] for d in retrieved
    )
    assert all(d["page_content"] == DOCS[d["metadata"]["doc_id"]] for d in named["fuse"].outputs)
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
    assert service.tracer.connect() is False
    answer = asyncio.run(service.query(QueryRequest(question=QUESTION), request_id="req-3"))
    assert answer.found and answer.answer
    feedback = FeedbackRequest(answer_id=answer.id, rating="down", question="q", answer="a")
    traces = FeedbackTraces(service.settings, down, wait_s=1)
    assert traces.attach(feedback, "evt-2") is None
    assert traces.outcomes == {"unavailable": 1}


def test_every_log_line_of_a_request_carries_its_request_id(
    service: RagService, capsys: pytest.CaptureFixture[str], json_logs: None
) -> None:
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


def test_an_answer_is_traced_in_mlflow_when_an_otlp_endpoint_is_set(
    service: RagService, tracking: TrackingSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Serve's spans go there; MLflow 3 alone would send its traces only there too.
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    mlflow.tracing.reset()  # MLflow reads the variable when its tracer provider starts
    service.tracer = AnswerTracer(service.settings, tracking)
    assert service.tracer.connect()
    answer = asyncio.run(service.query(QueryRequest(question=QUESTION), request_id="req-otlp"))
    [traced] = mlflow.search_traces(
        locations=[str(service.tracer.experiment_id)],
        filter_string=request_filter("req-otlp"),
        return_type="list",
        flush=True,
    )
    assert traced.info.tags[ANSWER_ID_TAG] == answer.id
    assert {span.name for span in traced.data.spans} == {
        "rag_answer",
        "retrieve",
        "fuse",
        "generate",
    }


def test_a_failing_client_request_id_loses_that_field_only_not_the_trace(
    service: RagService, tracking: TrackingSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(span: Any) -> Any:
        raise RuntimeError("no active span today")

    monkeypatch.setattr(mlflow.tracing.provider, "with_active_span", broken)
    service.tracer = AnswerTracer(service.settings, tracking)
    assert service.tracer.connect()
    answer = asyncio.run(service.query(QueryRequest(question=QUESTION), request_id="req-7"))
    [traced] = mlflow.search_traces(
        locations=[str(service.tracer.experiment_id)],
        filter_string=request_filter("req-7"),
        return_type="list",
        flush=True,
    )
    assert traced.info.state == "OK" and traced.info.client_request_id is None
    assert traced.info.tags[ANSWER_ID_TAG] == answer.id
    assert traced.info.tags["lakeserve.mode"] == "quoted"  # set as the answer ended
    assert [s.outputs["answer"] for s in traced.data.spans if s.name == "rag_answer"] == [
        answer.answer
    ]


@pytest.mark.parametrize(
    ("given", "clean"),
    [("r" * 300, "r" * 200), ("réq-ünï-8", "rq-n-8")],
    ids=["300 chars", "unicode"],
)
def test_a_long_or_unicode_request_id_is_cleaned_once_for_logs_response_and_trace(
    service: RagService,
    tracking: TrackingSettings,
    capsys: pytest.CaptureFixture[str],
    json_logs: None,
    given: str,
    clean: str,
) -> None:
    service.tracer = AnswerTracer(service.settings, tracking)
    assert service.tracer.connect()
    assert service.chain is not None
    service.chain = RagChain(
        service.chain.retriever, RecordingChatModel(responses=[], fail=True), k=2
    )
    host, _ = fake_host()
    with TestClient(create_app(host, rag=service)) as client:
        response = client.post(
            "/rag/query",
            json={"question": QUESTION},
            headers={b"X-Request-Id": given.encode()},  # raw UTF-8 bytes
        )
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == clean
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    degraded = [e for e in lines if e["event"] == "LLM failed, answering from the sources"]
    assert [e["request_id"] for e in degraded] == [clean]
    [traced] = mlflow.search_traces(
        locations=[str(service.tracer.experiment_id)],
        filter_string=request_filter(clean),
        return_type="list",
        flush=True,
    )
    assert traced.info.tags[ANSWER_ID_TAG] == response.json()["id"]
    assert traced.info.tags[REQUEST_ID_TAG] == clean
    # MLflow's column holds 50 characters: a longer id is only a tag.
    assert traced.info.client_request_id == (clean if len(clean) <= 50 else None)


def test_a_stage_before_mlflow_is_imported_does_not_import_it(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    root = trace.get_tracer("test").start_span("rag.answer")
    answer = AnswerTrace("rag-1", "req-8", root)
    with answer.stage("generate", "LLM", {"question": QUESTION}) as step:
        step.output("an answer", mode="quoted")
    root.end()
    assert "rag.generate" in by_name(spans.get_finished_spans())


def test_a_closed_stream_ends_its_answer_span_at_once(
    service: RagService, spans: InMemorySpanExporter
) -> None:
    request = ChatCompletionRequest(
        model="lakeserve-rag", messages=[{"role": "user", "content": QUESTION}], stream=True
    )

    async def first_then_close() -> set[str]:
        stream = service.chat_stream(request, request_id="req-9")
        await anext(stream)
        await stream.aclose()  # a client gone midway
        return {span.name for span in spans.get_finished_spans()}

    spans.clear()
    assert "rag.answer" in asyncio.run(first_then_close())


class StreamingHandle:
    """A Serve handle whose `chat_stream` yields one chunk, then fails."""

    def options(self, **_: Any) -> StreamingHandle:
        return self

    @property
    def chat_stream(self) -> StreamingHandle:
        return self

    def remote(self, *_: Any) -> AsyncIterator[ChatCompletionChunk]:
        async def chunks() -> AsyncIterator[ChatCompletionChunk]:
            yield chunk(1)
            raise RuntimeError("replica lost")

        return chunks()


def test_the_call_span_of_a_stream_covers_it_and_records_its_error(
    spans: InMemorySpanExporter,
) -> None:
    request = ChatCompletionRequest(
        model="lakeserve-rag", messages=[{"role": "user", "content": QUESTION}], stream=True
    )

    async def consume() -> tuple[bool, list[ChatCompletionChunk]]:
        got: list[ChatCompletionChunk] = []
        stream = RagHandle(StreamingHandle()).chat_stream(request, "req-10")
        with pytest.raises(RuntimeError, match="replica lost"):
            async for item in stream:
                got.append(item)
                # The span is still open while the stream is consumed.
                open_now = "rag.call chat_stream" not in by_name(spans.get_finished_spans())
        return open_now, got

    spans.clear()
    open_while_streaming, got = asyncio.run(consume())
    assert open_while_streaming and len(got) == 1
    call = by_name(spans.get_finished_spans())["rag.call chat_stream"]
    assert call.status.status_code == trace.StatusCode.ERROR
    assert call.status.description == "RuntimeError"
