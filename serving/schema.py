"""Check request rows against a model's input signature and build the typed frame it expects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from kernel.errors import InvalidInput, PayloadTooLarge

# MLflow signature type -> (v2 datatype, numpy dtype)
_TYPES: dict[str, tuple[str, str]] = {
    "double": ("FP64", "float64"),
    "float": ("FP32", "float32"),
    "long": ("INT64", "int64"),
    "integer": ("INT32", "int32"),
    "boolean": ("BOOL", "bool"),
    "string": ("BYTES", "object"),
}


@dataclass(frozen=True)
class Column:
    """One input column of a model: name and MLflow type name."""

    name: str
    type: str

    @property
    def v2_datatype(self) -> str:
        """Return the Open Inference Protocol datatype of this column."""
        return _TYPES[self.type][0]


@dataclass(frozen=True)
class InputSchema:
    """The columns a model takes, in signature order."""

    columns: tuple[Column, ...]

    @classmethod
    def from_mlflow(cls, schema: Any) -> InputSchema:
        """Build from an MLflow `Schema` of named column specs."""
        if schema is None or not schema.has_input_names():
            raise ValueError("the model signature has no named input columns")
        columns = []
        for spec in schema.inputs:
            type_name = str(spec.type.name if hasattr(spec.type, "name") else spec.type)
            if type_name not in _TYPES:
                raise ValueError(f"unsupported signature type {type_name} for {spec.name}")
            columns.append(Column(spec.name, type_name))
        return cls(tuple(columns))

    @property
    def names(self) -> list[str]:
        """Return the column names in order."""
        return [c.name for c in self.columns]

    def check(self, columns: dict[str, Any], max_rows: int) -> dict[str, np.ndarray]:
        """Return the columns typed as the signature says, or raise naming the first problem.

        `columns` maps column name to a sequence (list or numpy array) of values. Arrays, not a
        DataFrame: a batch builds one frame for all its requests, which is much cheaper.
        """
        if not columns or all(len(values) == 0 for values in columns.values()):
            raise InvalidInput("the batch is empty: send at least one row")
        missing = [name for name in self.names if name not in columns]
        if missing:
            raise InvalidInput(
                f"missing column(s) {', '.join(missing)}; the model takes {', '.join(self.names)}"
            )
        unknown = [name for name in columns if name not in self.names]
        if unknown:
            raise InvalidInput(
                f"unknown column(s) {', '.join(unknown)}; the model takes {', '.join(self.names)}"
            )
        lengths = {len(values) for values in columns.values()}
        if len(lengths) > 1:
            raise InvalidInput("columns have different lengths")
        rows = lengths.pop()
        if rows == 0:
            raise InvalidInput("the batch is empty: send at least one row")
        if rows > max_rows:
            raise PayloadTooLarge(f"{rows} rows exceed the limit of {max_rows} rows per request")
        return {c.name: _typed(c, columns[c.name]) for c in self.columns}

    def frame(self, batch: list[dict[str, np.ndarray]]) -> pd.DataFrame:
        """Stack checked requests into one frame in signature order."""
        if len(batch) == 1:
            return pd.DataFrame(batch[0], columns=self.names)
        return pd.DataFrame(
            {name: np.concatenate([item[name] for item in batch]) for name in self.names}
        )


def _typed(column: Column, values: Any) -> np.ndarray:
    """Check one column's values and return them with the signature's dtype."""
    if isinstance(values, np.ndarray) and values.dtype != object:
        array = values  # decoded from a typed v2 tensor
    else:
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
    if array.ndim != 1:
        raise InvalidInput(
            f"column {column.name}: expected one value per row, got shape {list(array.shape)}"
        )
    expected = column.type
    if array.dtype == object:
        check = {"string": _is_string, "boolean": _is_bool}.get(expected, _is_number)
        for row, value in enumerate(array):
            if not check(value):
                got = _describe(value)
                raise InvalidInput(
                    f"column {column.name}: expected {expected}, got {got} at row {row}"
                )
    elif (expected == "boolean") != (array.dtype.kind == "b") or expected == "string":
        raise InvalidInput(f"column {column.name}: expected {expected}, got {array.dtype} values")
    if expected in {"string", "boolean"}:
        return array.astype(_TYPES[expected][1])
    as_float = array.astype("float64")
    if np.isnan(as_float).any():
        row = int(np.flatnonzero(np.isnan(as_float))[0])
        raise InvalidInput(f"column {column.name}: missing value at row {row}")
    if expected in {"long", "integer"}:
        if not np.all(np.mod(as_float, 1) == 0):
            row = int(np.flatnonzero(np.mod(as_float, 1) != 0)[0])
            raise InvalidInput(
                f"column {column.name}: expected {expected}, got {array[row]!r} at row {row}"
            )
        bounds = np.iinfo(_TYPES[expected][1])
        outside = (as_float < bounds.min) | (as_float > bounds.max)
        if array.dtype.kind in "iu":  # exact check: float64 rounds large integers
            outside = (array < bounds.min) | (array > bounds.max)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise InvalidInput(
                f"column {column.name}: {array[row]!r} at row {row} is outside the "
                f"{expected} range [{bounds.min}, {bounds.max}]"
            )
    return array.astype(_TYPES[expected][1])


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool | np.bool_)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    return f"{type(value).__name__} {repr(value)[:40]}"
