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
    return _numbers(column, array)


def _numbers(column: Column, array: np.ndarray) -> np.ndarray:
    """Return a numeric column with its dtype once every value is finite and fits it.

    JSON allows `Infinity`, `NaN`, `1e400` (read as inf) and integers of any length: each is a
    422 naming the column and row, never a value the model sees or an overflow in the cast.
    """
    dtype = np.dtype(_TYPES[column.type][1])
    integral = dtype.kind == "i"
    if array.dtype == object:  # JSON values, checked exactly (a float64 rounds big integers)
        for row, value in enumerate(array):
            _check_number(column, row, value, dtype)
        return array.astype(dtype)
    values = array.astype("float64")
    bad = ~np.isfinite(values)
    if integral:
        bad |= np.mod(np.where(bad, 0, values), 1) != 0
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        _check_number(column, row, array[row].item(), dtype)
    limits = np.iinfo(dtype) if integral else np.finfo(dtype)
    if array.dtype.kind in "iu" and integral:  # exact: compare the integers themselves
        outside = (array < limits.min) | (array > limits.max)
    else:
        outside = (values < float(limits.min)) | (values > float(limits.max))
    if outside.any():
        row = int(np.flatnonzero(outside)[0])
        _check_number(column, row, array[row].item(), dtype)
    return array.astype(dtype)


def _check_number(column: Column, row: int, value: Any, dtype: np.dtype[Any]) -> None:
    """Raise InvalidInput unless `value` is a finite number that `dtype` holds exactly enough."""
    where = f"column {column.name}"
    if isinstance(value, float | np.floating):
        if np.isnan(value):
            raise InvalidInput(f"{where}: missing value at row {row}")
        if np.isinf(value):
            raise InvalidInput(
                f"{where}: {value!r} at row {row} is not a finite number (JSON Infinity, or a "
                f"literal beyond the {column.type} range)"
            )
        if dtype.kind == "i" and not float(value).is_integer():
            raise InvalidInput(f"{where}: expected {column.type}, got {value!r} at row {row}")
    limits = np.iinfo(dtype) if dtype.kind == "i" else np.finfo(dtype)
    low, high = (
        (int(limits.min), int(limits.max)) if dtype.kind == "i" else (-limits.max, limits.max)
    )
    try:
        inside = low <= (int(value) if dtype.kind == "i" else float(value)) <= high
    except OverflowError:  # an integer literal too long for a float
        inside = False
    if not inside:
        shown = (
            repr(value)
            if len(repr(value)) <= 40
            else f"{repr(value)[:20]}... ({len(repr(value))} digits)"
        )
        raise InvalidInput(
            f"{where}: {shown} at row {row} is outside the {column.type} range [{low}, {high}]"
        )


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
