"""Where Serve's spans go: batched JSON lines in a rotated file (no collector), batched OTLP.

Spans of a local tracer provider (the global one is left alone); the platform's span files are
read in tests/rag/test_tracing_serve.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from serving import tracing
from serving.tracing import SpanFile, SpanSettings, span_processors


def test_without_a_collector_spans_are_batched_json_lines_in_the_serve_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setattr(
        "ray.serve._private.logging_utils.get_serve_logs_dir", lambda: str(tmp_path)
    )
    [processor] = span_processors()
    assert isinstance(processor, BatchSpanProcessor)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    for n in range(3):
        provider.get_tracer("test").start_span(f"span-{n}").end()
    provider.shutdown()  # flushes the batch
    [path] = (tmp_path / "spans").glob("*.json")
    lines = path.read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["span-0", "span-1", "span-2"]


def test_a_collector_gets_batched_spans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    [processor] = span_processors()
    assert isinstance(processor, BatchSpanProcessor)
    processor.shutdown()


def test_a_span_file_is_rotated_past_its_size(tmp_path: Path) -> None:
    exporter = tracing.span_file(tmp_path, SpanSettings(span_file_mb=1))
    exporter.max_bytes = 2000
    provider = TracerProvider()
    provider.add_span_processor(tracing.batched(exporter, SpanSettings(span_queue=64)))
    tracer = provider.get_tracer("test")
    for n in range(40):
        tracer.start_span(f"span-{n}").end()
        provider.force_flush()
    provider.shutdown()
    [current] = tmp_path.glob("*.json")
    rotated = current.with_name(f"{current.name}.1")
    assert current.stat().st_size <= 2000 and rotated.stat().st_size <= 2000
    assert json.loads(current.read_text().splitlines()[-1])["name"] == "span-39"
    assert isinstance(exporter, SpanFile)
