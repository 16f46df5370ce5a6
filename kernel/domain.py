"""The domain of a model's inputs: what it saw in training, and which served values fall outside.

Training records, per feature, the categories it saw (strings and booleans) or the range of the
numbers (from the gold table version it was trained on) in the model's MLmodel metadata, so
the digest of the artifact files covers it. Serving checks every request against it: values
outside are counted, reported in the response, or refused for a model configured strict.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

METADATA_KEY = "lakeserve_domain"
SHOWN_VALUES = 12
SHOWN_CHARS = 80  # of a value in a message


@dataclass(frozen=True)
class FeatureDomain:
    """One feature's domain: the categories seen, or the closed numeric range."""

    name: str
    values: frozenset[Any] | None = None  # categorical (strings, booleans)
    low: float | None = None  # numeric
    high: float | None = None

    @property
    def categorical(self) -> bool:
        return self.values is not None

    def outside(self, values: np.ndarray) -> np.ndarray:
        """A mask of the values outside this domain."""
        if self.values is not None:
            allowed = self.values
            return np.fromiter((v not in allowed for v in values.tolist()), bool, len(values))
        if values.dtype.kind not in "iuf":
            return np.zeros(len(values), bool)
        return (values < self.low) | (values > self.high)

    def message(self, value: Any, row: int) -> str:
        """Say that `value` at `row` is outside this domain."""
        shown = repr(plain(value))
        if len(shown) > SHOWN_CHARS:
            shown = shown[:SHOWN_CHARS] + f"... ({len(shown)} chars)"
        return (
            f"column {self.name}: {shown} at row {row} is outside the training "
            f"domain ({self.describe()})"
        )

    def describe(self) -> str:
        """The domain in words, for messages."""
        if self.values is not None:
            shown = sorted(map(str, self.values))
            more = f", ... ({len(shown)} in all)" if len(shown) > SHOWN_VALUES else ""
            return "one of " + ", ".join(shown[:SHOWN_VALUES]) + more
        return f"in [{_number(self.low)}, {_number(self.high)}]"

    def to_json(self) -> dict[str, Any]:
        if self.values is not None:
            return {"values": sorted(self.values, key=lambda v: (str(type(v)), v))}
        return {"low": self.low, "high": self.high}


@dataclass(frozen=True)
class Outside:
    """The out-of-domain values of one request: per feature, the rows outside."""

    rows: int
    masks: Mapping[str, np.ndarray]  # only features with at least one value outside

    def __bool__(self) -> bool:
        return bool(self.masks)

    def per_row(self) -> list[list[str]]:
        """Each row's features outside the domain, by name."""
        names: list[list[str]] = [[] for _ in range(self.rows)]
        for feature, mask in sorted(self.masks.items()):
            for row in np.flatnonzero(mask).tolist():
                names[row].append(feature)
        return names

    def rows_outside(self) -> int:
        """How many rows have at least one value outside."""
        if not self.masks:
            return 0
        return int(np.logical_or.reduce(list(self.masks.values())).sum())


@dataclass(frozen=True)
class Domain:
    """Every feature's domain, in the model's input order."""

    features: tuple[FeatureDomain, ...]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, columns: Iterable[str]) -> Domain:
        """Measure the domain of `columns`: categories of strings and booleans, else min..max."""
        features = []
        for name in columns:
            series = frame[name]
            if series.dtype == object or series.dtype.kind == "b" or _is_string(series):
                seen = frozenset(plain(v) for v in series.dropna().unique().tolist())
                features.append(FeatureDomain(name, values=seen))
            else:
                features.append(
                    FeatureDomain(name, low=float(series.min()), high=float(series.max()))
                )
        return cls(tuple(features))

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Domain:
        """Read what `to_json` wrote (the MLmodel metadata entry)."""
        features = []
        for name, spec in data.items():
            if "values" in spec:
                features.append(FeatureDomain(name, values=frozenset(spec["values"])))
            else:
                features.append(FeatureDomain(name, low=spec["low"], high=spec["high"]))
        return cls(tuple(features))

    def to_json(self) -> dict[str, Any]:
        return {f.name: f.to_json() for f in self.features}

    def feature(self, name: str) -> FeatureDomain | None:
        return next((f for f in self.features if f.name == name), None)

    def outside(self, columns: Mapping[str, np.ndarray]) -> Outside:
        """Which values of checked request columns fall outside the domain."""
        rows = len(next(iter(columns.values()))) if columns else 0
        masks = {}
        for feature in self.features:
            values = columns.get(feature.name)
            if values is None:
                continue
            mask = feature.outside(values)
            if mask.any():
                masks[feature.name] = mask
        return Outside(rows, masks)

    def problems(
        self, columns: Mapping[str, np.ndarray], outside: Outside, limit: int = 5
    ) -> list[str]:
        """Say, for the first `limit` values outside, the column, row, value and the domain."""
        said = []
        for name, mask in outside.masks.items():
            feature = self.feature(name)
            assert feature is not None
            for row in np.flatnonzero(mask).tolist():
                said.append(feature.message(columns[name][row], row))
                if len(said) == limit:
                    return said
        return said


def from_metadata(metadata: Mapping[str, Any] | None) -> Domain | None:
    """The domain in an MLmodel's metadata, or None for a model logged without one."""
    data = (metadata or {}).get(METADATA_KEY)
    return Domain.from_json(data) if isinstance(data, Mapping) and data else None


def _is_string(series: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(series.dtype)


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds (JSON and messages); anything else as is."""
    return value.item() if isinstance(value, np.generic) else value


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"
