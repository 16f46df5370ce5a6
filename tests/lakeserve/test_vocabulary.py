"""One metrics vocabulary: the README's table, and what a running platform exports, match it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lakeserve.observability.vocabulary import JOB_LABELS, series_names, table, vocabulary
from tests.utils.platform import KEY, MODEL, Platform

README = Path(__file__).parents[2] / "README.md"
# Labels Ray's export adds to every replica series (Serve's tags and Ray's own).
RAY_TAGS = {"application", "deployment", "replica", "Component", "NodeAddress", "SessionName",
            "Version", "WorkerId", "JobId", "otel_scope_name", "otel_scope_version",
            "otel_scope_schema_url"}  # fmt: skip


def test_the_readme_table_is_the_vocabulary() -> None:
    assert table() in README.read_text(), "README's metrics table is stale: paste " + (
        "`python -m lakeserve.observability.vocabulary`"
    )


def test_names_follow_one_convention() -> None:
    for metric in vocabulary():
        assert metric.name.startswith("lakeserve_"), metric
        if metric.kind == "histogram":
            assert metric.name.endswith(("_seconds", "_requests", "_rows")), metric
        if "timestamp" in metric.name:
            assert metric.name.endswith("_timestamp_seconds"), metric
        if "code" in metric.labels:
            assert "status_class" in metric.labels, metric
        if metric.source.endswith("(pushed)"):
            assert metric.labels[-2:] == JOB_LABELS, metric


def families(text: str, prefix: str) -> dict[str, set[str]]:
    """Sample names starting with `prefix` and the label names they carry."""
    found: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(prefix):
                found.setdefault(sample.name, set()).update(sample.labels)
    return found


@pytest.mark.integration
def test_a_running_platform_exports_exactly_the_vocabulary(platform: Platform) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    row = {"trip_distance": 3.2, "passenger_count": 1, "pickup_hour": 8, "pickup_dow": 2,
           "is_weekend": False, "pickup_borough": "Manhattan", "dropoff_borough": "Brooklyn",
           "is_airport": False, "rate_code": "Standard"}  # fmt: skip
    with httpx.Client(base_url=platform.url, headers=auth, timeout=120) as client:
        assert client.post(f"/predict/{MODEL}", json={"inputs": [row]}).status_code == 200
        assert client.post(f"/predict/{MODEL}", json={"inputs": []}).status_code == 422
        answer = client.post("/rag/query", json={"question": "How do I parse JSON?"})
        assert answer.status_code == 200
        local = families(client.get("/metrics").text, "lakeserve_")
    labels = {m.name: set(m.labels) for m in vocabulary()}
    known = series_names()
    unknown = set(local) - known
    assert not unknown, f"exported but not in the vocabulary (README): {sorted(unknown)}"
    for sample, names in local.items():
        family = next(m for m in vocabulary() if sample in m.series)
        assert names - {"le"} <= labels[family.name], (sample, names)
    ingress = {s for m in vocabulary() if m.source == "ingress replica" for s in m.series}
    # Every series of the ingress that this traffic makes (feedback and drops need more).
    expected = ingress - {s for s in ingress if "feedback" in s or "out_of_domain" in s}
    assert expected <= set(local), sorted(expected - set(local))

    # Ray's export of the node: the same names (ray_ prefixed) plus the RAG replica's index.
    exported_url = f"http://127.0.0.1:{platform.env['LAKESERVE_METRICS_PORT']}/metrics"
    rag = {s for m in vocabulary() if m.source == "RAG replica" for s in m.series}
    deadline = time.monotonic() + 60
    while True:
        exported = families(httpx.get(exported_url, timeout=10).text, "ray_lakeserve_")
        names = {n.removeprefix("ray_") for n in exported}
        if rag <= names or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert rag <= names, sorted(rag - names)
    assert not names - known, sorted(names - known)
    for sample, tags in exported.items():
        family = next(m for m in vocabulary() if sample.removeprefix("ray_") in m.series)
        assert tags - {"le"} <= labels[family.name] | RAY_TAGS, (sample, tags)
