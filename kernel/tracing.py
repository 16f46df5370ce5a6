"""OpenTelemetry spans: the exporter Ray Serve's `tracing_config` imports, and our own spans.

Ray Serve (2.60) sets the process's global tracer provider in every replica and proxy when the
Serve config has `tracing_config.enabled`, and opens a span per request and per handle call
with the caller's context. Spans started here use that global provider and context, so they
nest under Serve's. Without Serve's tracing (tests, CLIs) the provider is OpenTelemetry's
no-op one: a span costs a few microseconds and records nothing.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

TRACER = "lakeserve"
Attribute = str | bool | int | float


class OtlpSettings(BaseSettings):
    """Where spans go: an OTLP gRPC collector when set, else Ray's span files."""

    model_config = SettingsConfigDict(extra="ignore")

    endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
        ),
        description="OTLP gRPC collector (e.g. http://otel-collector:4317). Unset: Ray's "
        "default exporter, JSON lines under the Ray session's logs/serve/spans/. The "
        "exporter reads the other OTEL_EXPORTER_OTLP_* variables (insecure, headers) itself.",
    )


def span_processors() -> list[Any]:
    """Return the span processors of one Serve process (`tracing_config.exporter_import_path`).

    Ray calls this (without arguments: only its own default exporter is given a file name) in
    every replica and proxy when it sets up tracing.
    """
    settings = OtlpSettings()
    if settings.endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # Batched off the request path; a collector that is down costs dropped spans only.
        return [BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint))]
    from ray.serve._private.tracing_utils import default_tracing_exporter

    # The file Ray's default exporter would name by component, named by process instead.
    processors: list[Any] = default_tracing_exporter(f"lakeserve_{os.getpid()}_tracing.json")
    return processors


def _clean(attributes: dict[str, Any]) -> dict[str, Attribute]:
    return {k: v for k, v in attributes.items() if isinstance(v, str | bool | int | float)}


@contextlib.contextmanager
def span(
    name: str, kind: trace.SpanKind = trace.SpanKind.INTERNAL, **attributes: Any
) -> Iterator[trace.Span]:
    """Run a block in a span that is current (its own children nest under it).

    Attributes whose value is None (or not a scalar) are left out.
    """
    tracer = trace.get_tracer(TRACER)
    with tracer.start_as_current_span(name, kind=kind, attributes=_clean(attributes)) as current:
        yield current


def start_span(
    name: str,
    parent: trace.Span | None = None,
    kind: trace.SpanKind = trace.SpanKind.INTERNAL,
    **attributes: Any,
) -> trace.Span:
    """Start a span that is not made current, under `parent` (else the current span).

    For work that spans an async generator's yields, where a current span would leak into
    the consumer's context; the caller ends it.
    """
    context = trace.set_span_in_context(parent) if parent is not None else None
    tracer = trace.get_tracer(TRACER)
    return tracer.start_span(name, context=context, kind=kind, attributes=_clean(attributes))


def set_attributes(target: trace.Span, **attributes: Any) -> None:
    """Set the scalar attributes on a span (None values are left out)."""
    if target.is_recording():
        target.set_attributes(_clean(attributes))


def trace_id(target: trace.Span | None = None) -> str | None:
    """Return the W3C trace id (32 hex digits) of a span (default: the current one), if any."""
    context = (target or trace.get_current_span()).get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None
