"""OpenTelemetry spans of our own, nested in whatever tracer provider the process has.

Ray Serve (2.60) sets the process's global tracer provider in every replica and proxy when the
Serve config has `tracing_config.enabled`, and opens a span per request and per handle call
with the caller's context. Spans started here use that global provider and context, so they
nest under Serve's. Without Serve's tracing (tests, CLIs) the provider is OpenTelemetry's
no-op one: a span costs a few microseconds and records nothing. Where Serve's spans go is
serving/tracing.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace

TRACER = "lakeserve"
Attribute = str | bool | int | float


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
