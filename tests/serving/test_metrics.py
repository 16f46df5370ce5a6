"""The replica's metrics recorded twice: its own registry and Ray's export (a recording fake)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import Counter

from kernel.metrics import MetricSet
from serving.metrics import ServingMetrics


class RayMetric:
    """Records what Ray's metric would have been told."""

    def __init__(self, name: str, *_: Any, **__: Any) -> None:
        self.name = name
        self.calls: list[tuple[str, float, dict[str, str]]] = []

    def inc(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("inc", value, tags))

    def observe(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("observe", value, tags))

    def set(self, value: float, tags: dict[str, str]) -> None:
        self.calls.append(("set", value, tags))


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> ServingMetrics:
    made: dict[str, RayMetric] = {}

    def make(self: MetricSet, kind: type, name: str, *args: Any) -> RayMetric:
        made[name] = RayMetric(name)
        return made[name]

    monkeypatch.setattr(MetricSet, "_ray_metric", make)
    metrics = ServingMetrics(export=True)
    metrics.made = made  # type: ignore[attr-defined]
    return metrics


def test_every_record_reaches_both_with_the_same_labels(exported: ServingMetrics) -> None:
    exported.requests.labels("fare", "3", "predict", "503").inc()
    exported.latency.labels("fare", "predict").observe(0.02)
    ray = exported.made  # type: ignore[attr-defined]
    tags = {"model": "fare", "version": "3", "route": "predict", "code": "503"}
    assert ray["lakeserve_model_requests"].calls == [("inc", 1.0, {**tags, "status_class": "5xx"})]
    assert ray["lakeserve_model_request_duration_seconds"].calls == [
        ("observe", 0.02, {"model": "fare", "route": "predict"})
    ]
    text = exported.render().decode()
    assert (
        'lakeserve_model_requests_total{code="503",model="fare",route="predict",'
        'status_class="5xx",version="3"} 1.0' in text
    )


def test_a_new_version_drops_the_old_series_locally_and_zeroes_it_in_ray(
    exported: ServingMetrics,
) -> None:
    exported.model_loaded("fare", "1")
    exported.model_loaded("fare", "2")
    exported.model_loaded("fare", "2")  # the same version again keeps its series
    text = exported.render().decode()
    assert 'lakeserve_model_loaded{model="fare",version="2"} 1.0' in text
    assert 'version="1"' not in text
    calls = exported.made["lakeserve_model_loaded"].calls  # type: ignore[attr-defined]
    old, new = {"model": "fare", "version": "1"}, {"model": "fare", "version": "2"}
    assert calls == [("set", 1, old), ("set", 0, old), ("set", 1, new), ("set", 1, new)]
    calls.clear()
    exported.reexport_gauges()  # what keeps the gauges alive in Ray's export
    assert calls == [("set", 1, new)]
    assert exported.made["lakeserve_model_ready"].calls[-1] == ("set", 1, {"model": "fare"})  # type: ignore[attr-defined]


def test_without_export_nothing_touches_ray() -> None:
    metrics = ServingMetrics()
    metrics.model_loaded("fare", "1")
    assert isinstance(metrics.requests.local, Counter)
    assert metrics.version.labels("fare", "1")._ray is None
