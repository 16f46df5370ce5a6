"""Where the OpenTelemetry spans of the Serve processes go: Serve's `tracing_config` imports this.

Ray Serve (2.60) calls `span_processors()` in every replica and proxy when the Serve config has
`tracing_config.enabled`, then installs them on the process's tracer provider (sampler:
ParentBasedTraceIdRatio(sampling_ratio)). Every processor here is batched: a span ends
in microseconds on the event loop, a worker thread writes it later, and a full queue
drops spans instead of growing or blocking (Ray's default exporter writes pretty JSON on the
loop at every span end, to a file that only grows).

Sampling and `traceparent`: Ray's sampler follows an incoming `traceparent`, so a client that
sends one with the sampled flag (…-01) is traced whatever `sampling_ratio` says. Lakeserve
cannot strip it at the ingress: the replica reads the header before any ASGI middleware of
the app runs. The gateway in front of the platform (ingress controller, API gateway) must
drop or overwrite `traceparent`/`tracestate` from untrusted clients; the bounded queue
here caps what a client forcing sampling can cost (dropped spans, never a slower request).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from pydantic import AliasChoices, Field

from kernel.settings import Settings


class SpanSettings(Settings):
    """Where spans go: an OTLP gRPC collector when set, else JSON lines in the Ray session."""

    endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
        description="OTLP gRPC collector (e.g. http://otel-collector:4317). Unset: JSON lines "
        "under the Ray session's logs/serve/spans/. The exporter reads the other "
        "OTEL_EXPORTER_OTLP_* variables (insecure, headers) itself. MLflow's traces of RAG "
        "answers still go to the MLflow tracking server (rag/tracing.py).",
    )
    span_queue: int = Field(
        default=2048,
        ge=64,
        description="Spans waiting for export per process; past it new spans are dropped.",
    )
    span_file_mb: int = Field(
        default=64,
        ge=1,
        description="Size of a span file before it is rotated to <file>.1 (one kept).",
    )


class SpanFile(SpanExporter):
    """Spans as JSON lines in one file, moved to `<file>.1` when it would pass `max_bytes`."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._out = path.open("a", encoding="utf-8")

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        text = "".join(span.to_json(indent=None) + "\n" for span in spans)
        with self._lock:
            if self._out.closed:
                return SpanExportResult.FAILURE
            size = self._out.tell()
            if size and size + len(text) > self.max_bytes:
                self._out.close()
                os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
                self._out = self.path.open("a", encoding="utf-8")
            self._out.write(text)
            self._out.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._out.close()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def batched(exporter: SpanExporter, settings: SpanSettings) -> BatchSpanProcessor:
    """Return a processor exporting from a worker thread, dropping past the queue's size."""
    return BatchSpanProcessor(
        exporter,
        max_queue_size=settings.span_queue,
        max_export_batch_size=min(512, settings.span_queue),
        schedule_delay_millis=1000,
    )


def span_file(directory: Path, settings: SpanSettings) -> SpanFile:
    """Return the exporter to this process's span file in `directory` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"lakeserve_{os.getpid()}_tracing.json"
    return SpanFile(path, settings.span_file_mb * 1024 * 1024)


def span_processors() -> list[Any]:
    """Return the span processors of one Serve process (`tracing_config.exporter_import_path`).

    Ray calls this without arguments in every replica and proxy when it sets up tracing.
    """
    settings = SpanSettings()
    if settings.endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        # A collector that is down costs dropped spans only.
        return [batched(OTLPSpanExporter(endpoint=settings.endpoint), settings)]
    # Where Ray's own default exporter writes (the session's serve logs), found the same way.
    from ray.serve._private.logging_utils import get_serve_logs_dir

    return [batched(span_file(Path(get_serve_logs_dir()) / "spans", settings), settings)]
