"""Load the training table at a pinned version and split it deterministically by row id."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import structlog

from kernel.errors import DataError
from lakehouse.tables import Lakehouse, TableRef
from training.config import DataConfig

log = structlog.get_logger(__name__)
_BUCKETS = 10_000


@dataclass(frozen=True)
class Dataset:
    """Rows read from one version of one table, with the lineage to find them again."""

    frame: pd.DataFrame
    table: str
    uri: str
    version: int
    numeric: list[str]
    categorical: list[str]


def load(lake: Lakehouse, config: DataConfig) -> Dataset:
    """Read id, features and target at the configured version; check the schema first."""
    ref = TableRef.parse(config.table)
    table = lake.open(ref, config.version)
    schema = pa.schema(table.schema().to_arrow())
    wanted = [config.id_column, *config.features, config.target]
    missing = [name for name in wanted if name not in schema.names]
    if missing:
        raise DataError(
            f"table {ref}@{table.version()} lacks column(s) {', '.join(missing)}; "
            f"it has {', '.join(schema.names)}"
        )
    target_type = schema.field(config.target).type
    if not (pa.types.is_floating(target_type) or pa.types.is_integer(target_type)):
        raise DataError(f"target {config.target} must be numeric, not {target_type}")
    numeric, categorical = [], []
    for name in config.features:
        type_ = schema.field(name).type
        if pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_boolean(type_):
            numeric.append(name)
        elif pa.types.is_string(type_) or pa.types.is_large_string(type_):
            categorical.append(name)
        else:
            raise DataError(f"feature {name} has unsupported type {type_}")

    frame = lake.read(ref, table.version(), columns=wanted).to_pandas()
    before = len(frame)
    frame = frame.dropna(subset=[config.target])
    if before != len(frame):
        log.warning("rows without target dropped", rows=before - len(frame))
    if frame.empty:
        raise DataError(f"table {ref}@{table.version()} has no rows to train on")
    # Categorical inputs travel as plain Python strings: that is what clients send and what
    # the model signature records.
    for name in categorical:
        frame[name] = frame[name].astype(object)
    for name in numeric:
        if frame[name].isna().any():
            raise DataError(f"feature {name} has missing values in {ref}@{table.version()}")
    return Dataset(frame, str(ref), lake.uri(ref), table.version(), numeric, categorical)


def split(
    frame: pd.DataFrame,
    id_column: str,
    holdout_fraction: float,
    salt: str,
    max_train_rows: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split by a salted hash of the row id: a row stays on its side across versions and scales."""
    bucket = _hash(frame[id_column], salt) % _BUCKETS
    is_holdout = bucket < int(holdout_fraction * _BUCKETS)
    train, holdout = frame[~is_holdout], frame[is_holdout]
    if train.empty or holdout.empty:
        raise DataError(
            f"split of {len(frame)} rows with holdout_fraction={holdout_fraction} "
            "leaves an empty side; add data or change the fraction"
        )
    if max_train_rows is not None and len(train) > max_train_rows:
        order = np.argsort(_hash(train[id_column], salt + ":sample"), kind="stable")
        train = train.iloc[np.sort(order[:max_train_rows])]
    return train, holdout


def _hash(ids: pd.Series, salt: str) -> np.ndarray:
    key = (salt * 16)[:16]
    return pd.util.hash_array(ids.astype(str).to_numpy(dtype=object), hash_key=key)
