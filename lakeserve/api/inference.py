"""The one inference pipeline behind /v2 infer and /predict: decode, check, batch, encode, count."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import Response
from pydantic import BaseModel

from kernel.domain import Outside, plain
from kernel.errors import InvalidInput, NotFound, NotReady
from lakeserve.api.deps import LimitedBody
from lakeserve.api.errors import classify
from lakeserve.api.requestlog import request_id
from serving.host import ModelHost, ModelSlot
from serving.invocations import MAX_WARNINGS, DomainReport, DomainWarning
from serving.model import LoadedModel

VERSION_HEADER = "X-Model-Version"

# What a protocol contributes: body -> (columns, encoder of (model name, predictions, version,
# what to say about values outside the training domain)).
Encoder = Callable[[str, np.ndarray, str, DomainReport], BaseModel]
Decoder = Callable[[bytes, LimitedBody], tuple[dict[str, Any], Encoder]]


def loaded(host: ModelHost, name: str, version: str | None = None) -> tuple[ModelSlot, LoadedModel]:
    """Return the slot and the version it serves now.

    Raises:
        NotFound: the model is not hosted, or `version` is not the one served.
        NotReady: no version is loaded yet.
    """
    slot = host.slot(name)
    model = slot.current
    if model is None:
        detail = f": {slot.last_error}" if slot.last_error else ""
        raise NotReady(f"model {name} is not loaded yet{detail}")
    if version is not None and version != model.version:
        raise NotFound(
            f"model {name} version {version} is not served; "
            f"@{slot.spec.alias} is version {model.version}"
        )
    return slot, model


async def run(
    host: ModelHost,
    name: str,
    endpoint: str,
    body: LimitedBody,
    decode: Decoder,
    version: str | None = None,
) -> Response:
    """Answer one inference request; every outcome is counted and timed."""
    # Unknown names from the URL must not create new label values (unbounded series).
    label = name if name in host.slots else "_unknown"
    metrics = host.metrics
    started = time.perf_counter()
    requests = body.request.app.state.request_log
    slot = host.slots.get(name)
    logged = requests is not None and requests.sampled(slot.spec.log_sample if slot else 1.0)
    model: LoadedModel | None = None
    rows: dict[str, np.ndarray] | None = None
    outside: Outside | None = None
    try:
        columns, encode = decode(await body.read(), body)
        slot, model = loaded(host, name, version)
        rows = model.schema.check(columns, host.options.max_rows_per_request)
        outside = model.domain.outside(rows) if model.domain is not None else None
        report = _domain(host, slot, model, rows, outside)
        predictions, served = await slot.predict(model, rows)
        answer = encode(name, predictions, served, report)
    except Exception as exc:
        kind = classify(exc).kind
        metrics.requests.labels(label, "none", endpoint, str(kind.status)).inc()
        metrics.errors.labels(label, kind.type).inc()
        elapsed = time.perf_counter() - started
        metrics.latency.labels(label, endpoint).observe(elapsed)
        if logged:
            requests.prediction(
                request_id=request_id(body.request), label=label, model=name,
                version=model.version if model else None, endpoint=endpoint,
                status=kind.status, error=kind.type, latency_s=elapsed,
                schema=model.schema if model else None, rows=rows, outside=outside,
            )  # fmt: skip
        raise
    elapsed = time.perf_counter() - started
    metrics.latency.labels(label, endpoint).observe(elapsed)
    metrics.requests.labels(label, served, endpoint, "200").inc()
    if logged:
        requests.prediction(
            request_id=request_id(body.request), label=label, model=name, version=served,
            endpoint=endpoint, status=200, error=None, latency_s=elapsed,
            schema=model.schema, rows=rows, predictions=predictions, outside=outside,
        )  # fmt: skip
    return Response(
        answer.model_dump_json(exclude_none=True),
        media_type="application/json",
        headers={VERSION_HEADER: served},
    )


def _domain(
    host: ModelHost,
    slot: ModelSlot,
    model: LoadedModel,
    rows: dict[str, np.ndarray],
    outside: Outside | None,
) -> DomainReport:
    """Count the values outside the version's training domain; refuse them for a strict model.

    Raises:
        InvalidInput: the model is configured strict and a value is outside.
    """
    if model.domain is None or not outside:
        return DomainReport()
    for feature, mask in outside.masks.items():
        host.metrics.out_of_domain.labels(model.name, model.version, feature).inc(int(mask.sum()))
    if slot.spec.strict_domain:
        problems = model.domain.problems(rows, outside)
        raise InvalidInput(
            "; ".join(problems) + f" (model {model.name} v{model.version} is strict about "
            "its training domain)"
        )
    warnings: list[DomainWarning] = []
    for name, mask in outside.masks.items():
        domain = model.domain.feature(name)
        assert domain is not None
        for row in np.flatnonzero(mask).tolist()[: MAX_WARNINGS - len(warnings)]:
            value = plain(rows[name][row])
            warnings.append(
                DomainWarning(row=row, column=name, value=value, message=domain.message(value, row))
            )
    values = sum(int(mask.sum()) for mask in outside.masks.values())
    return DomainReport(warnings, values, tuple(outside.masks))
