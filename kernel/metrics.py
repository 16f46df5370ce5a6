"""Prometheus metrics in one vocabulary: a registry per component, twinned into Ray's export.

Every long-running component keeps its metrics in a `MetricSet`: a prometheus_client registry of
its own (a component's `/metrics`), and, inside a Ray Serve replica, the same series recorded into
Ray's metrics export (`ray.serve.metrics`). Ray's agent on every node serves all replicas' series
on its metrics port as `ray_lakeserve_*`; the scrape configs in k8s/ drop the `ray_` prefix, so
Prometheus stores the names `/metrics` shows. Batch jobs push theirs to a Pushgateway
(`kernel.jobs`). Names, units and labels are listed in the README's metrics table; the tests
check that table against what a running platform exports.

Label vocabulary: `model`, `version`, `route` (the API route, the request log's `endpoint`),
`code` (HTTP status), `status_class` (2xx, 4xx, 5xx), `table`, `outcome`, `job`, `name`.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

__all__ = ["CONTENT_TYPE", "MetricSet", "Series", "TwinMetric", "status_class"]

Kind = type[Counter] | type[Histogram] | type[Gauge]


def status_class(code: int) -> str:
    """Return the status class label of an HTTP status code ("2xx", "4xx", "5xx")."""
    return f"{code // 100}xx"


class Series:
    """One labelled series, recorded in the registry and, when exported, in Ray's metric."""

    __slots__ = ("_local", "_ray", "_tags", "value")

    def __init__(self, local: Any, ray: Any, tags: dict[str, str]) -> None:
        self._local, self._ray, self._tags = local, ray, tags
        self.value: float | None = None  # a gauge's last value

    def inc(self, amount: float = 1.0) -> None:
        self._local.inc(amount)
        if self._ray is not None:
            self._ray.inc(amount, tags=self._tags)

    def observe(self, value: float) -> None:
        self._local.observe(value)
        if self._ray is not None:
            self._ray.observe(value, tags=self._tags)

    def set(self, value: float) -> None:
        self.value = value
        self._local.set(value)
        if self._ray is not None:
            self._ray.set(value, tags=self._tags)

    def reexport(self) -> None:
        """Send a gauge's last value to Ray again (Ray drops a gauge series not set lately)."""
        if self._ray is not None and self.value is not None:
            self._ray.set(self.value, tags=self._tags)


class TwinMetric:
    """A prometheus_client metric with its Ray twin; `labels()` returns a cached series."""

    def __init__(self, local: Any, ray: Any, labels: tuple[str, ...]) -> None:
        self.local, self._ray, self._labels = local, ray, labels
        self._series: dict[tuple[str, ...], Series] = {}

    def labels(self, *values: str) -> Series:
        series = self._series.get(values)
        if series is None:
            local = self.local.labels(*values) if self._labels else self.local
            series = Series(local, self._ray, dict(zip(self._labels, values, strict=True)))
            self._series[values] = series
        return series

    def series(self) -> list[tuple[str, ...]]:
        """The label values recorded so far."""
        return list(self._series)

    def reexport(self) -> None:
        """Send every series' last gauge value to Ray again."""
        for series in self._series.values():
            series.reexport()

    def remove(self, *values: str) -> None:
        """Drop a series from the registry; Ray's export cannot drop one, so it reads 0."""
        series = self._series.pop(values, None)
        if series is None:
            return
        if series._ray is not None:
            series._ray.set(0, tags=series._tags)
        self.local.remove(*values)


class MetricSet:
    """A component's metrics in a registry of their own (apps and tests do not collide).

    `export`: also record into Ray's metrics export (in a Serve replica: `ray.serve.metrics`).
    """

    def __init__(self, export: bool = False) -> None:
        # No `*_created` series: a counter's start time doubles every series and says nothing
        # rate() does not (process-wide switch of prometheus_client; every set wants it off).
        disable_created_metrics()
        self.registry = CollectorRegistry()
        self._export = export
        self._gauges: list[TwinMetric] = []

    def make(
        self,
        kind: Kind,
        name: str,
        documentation: str,
        labels: list[str] | None = None,
        buckets: tuple[float, ...] | None = None,
    ) -> TwinMetric:
        """Create one metric (Counter names get `_total` in the exposition)."""
        names = tuple(labels or ())
        extra: dict[str, Any] = {} if buckets is None else {"buckets": buckets}
        local = kind(name, documentation, names, registry=self.registry, **extra)
        ray = self._ray_metric(kind, name, documentation, names, buckets)
        metric = TwinMetric(local, ray, names)
        if kind is Gauge:
            self._gauges.append(metric)
        return metric

    def reexport_gauges(self) -> None:
        """Send every gauge's last values to Ray's export again (no-op without export).

        Ray evicts a gauge series that was not set within two report intervals (2 x 10 s);
        a gauge set once (the version loaded) would vanish from Prometheus without this.
        """
        if self._export:
            for gauge in self._gauges:
                gauge.reexport()

    def _ray_metric(
        self,
        kind: Kind,
        name: str,
        documentation: str,
        names: tuple[str, ...],
        buckets: tuple[float, ...] | None,
    ) -> Any:
        if not self._export:
            return None
        from ray.serve import metrics as ray_metrics

        keys: Any = names  # Ray annotates tag_keys as Tuple[str] (one element): any length works
        if kind is Counter:
            return ray_metrics.Counter(name, documentation, tag_keys=keys)
        if kind is Gauge:
            return ray_metrics.Gauge(name, documentation, tag_keys=keys)
        return ray_metrics.Histogram(
            name, documentation, boundaries=list(buckets or ()), tag_keys=keys
        )

    def render(self) -> bytes:
        """Return the text exposition of every metric."""
        return generate_latest(self.registry)
