"""Silver rules: each drops one kind of bad raw row, for a stated reason, and is counted.

Rules run in order on one daily batch; a row is charged to the first rule that rejects it.
Normalisations (labels, passenger-count imputation) run after the rejections.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from lakehouse.trips.zones import N_ZONES

RULES_VERSION = "1"

SILVER_SCHEMA = pa.schema(
    [
        ("trip_id", pa.string()),
        ("vendor_id", pa.int16()),
        ("pickup_ts", pa.timestamp("us", tz="UTC")),
        ("dropoff_ts", pa.timestamp("us", tz="UTC")),
        ("passenger_count", pa.int16()),
        ("trip_distance", pa.float64()),
        ("pickup_zone", pa.int16()),
        ("dropoff_zone", pa.int16()),
        ("rate_code", pa.string()),
        ("payment_type", pa.string()),
        ("fare_amount", pa.float64()),
        ("tip_amount", pa.float64()),
        ("total_amount", pa.float64()),
        ("ingest_date", pa.date32()),
    ]
)

REQUIRED = [
    "trip_id",
    "pickup_datetime",
    "dropoff_datetime",
    "trip_distance",
    "pickup_zone",
    "dropoff_zone",
    "fare_amount",
]
RATE_CODES = {"standard", "jfk", "newark", "negotiated"}
PAYMENT_TYPES = {"card", "cash", "no charge", "dispute"}
MIN_FARE, MAX_FARE = 2.5, 500.0
MAX_DISTANCE_MILES = 100.0
MIN_DURATION, MAX_DURATION = pd.Timedelta(minutes=1), pd.Timedelta(hours=6)


@dataclass(frozen=True)
class Rule:
    """A named rejection: `rejects(df)` is True for the rows to drop."""

    name: str
    reason: str
    rejects: Callable[[pd.DataFrame], pd.Series]


def _timestamps(df: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_datetime(df[column], format="%Y-%m-%d %H:%M:%S", errors="coerce", utc=True)


def _duration(df: pd.DataFrame) -> pd.Series:
    return _timestamps(df, "dropoff_datetime") - _timestamps(df, "pickup_datetime")


RULES: tuple[Rule, ...] = (
    Rule(
        "duplicate_trip_id",
        "the feed re-sends trips; keep the first copy",
        lambda df: df["trip_id"].duplicated(keep="first"),
    ),
    Rule(
        "missing_required",
        f"{', '.join(REQUIRED)} must be present",
        lambda df: df[REQUIRED].isna().any(axis=1),
    ),
    Rule(
        "malformed_timestamp",
        "pickup and dropoff must be 'YYYY-MM-DD HH:MM:SS' timestamps",
        lambda df: (
            _timestamps(df, "pickup_datetime").isna() | _timestamps(df, "dropoff_datetime").isna()
        ),
    ),
    Rule(
        "implausible_duration",
        "dropoff must come 1 minute to 6 hours after pickup",
        lambda df: ~_duration(df).between(MIN_DURATION, MAX_DURATION),
    ),
    Rule(
        "distance_out_of_range",
        f"trip distance must be in (0, {MAX_DISTANCE_MILES:g}] miles",
        lambda df: ~((df["trip_distance"] > 0) & (df["trip_distance"] <= MAX_DISTANCE_MILES)),
    ),
    Rule(
        "unknown_zone",
        f"pickup and dropoff zones must be TLC zones 1..{N_ZONES}",
        lambda df: (
            ~(df["pickup_zone"].between(1, N_ZONES) & df["dropoff_zone"].between(1, N_ZONES))
        ),
    ),
    Rule(
        "passenger_count_out_of_range",
        "passenger count must be 1..6 when given",
        lambda df: df["passenger_count"].notna() & ~df["passenger_count"].between(1, 6),
    ),
    Rule(
        "fare_out_of_range",
        f"fare must be in [{MIN_FARE}, {MAX_FARE}] (refunds and typos are not trips)",
        lambda df: ~df["fare_amount"].between(MIN_FARE, MAX_FARE),
    ),
)


def apply_rules(bronze: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Split a bronze batch into (kept rows, rejected rows with `rejected_by`, counts per rule)."""
    remaining = bronze
    rejected: list[pd.DataFrame] = []
    counts: dict[str, int] = {}
    for rule in RULES:
        mask = rule.rejects(remaining).fillna(True).astype(bool)
        counts[rule.name] = int(mask.sum())
        if counts[rule.name]:
            rejected.append(remaining[mask].assign(rejected_by=rule.name))
            remaining = remaining[~mask]
    quarantine = (
        pd.concat(rejected, ignore_index=True)
        if rejected
        else bronze.iloc[0:0].assign(rejected_by=pd.Series(dtype="string"))
    )
    return remaining, quarantine, counts


def _label(values: pd.Series, known: set[str], default: str) -> pd.Series:
    cleaned = values.astype("string").str.strip().str.lower()
    return cleaned.where(cleaned.isin(known), default)


def to_silver(kept: pd.DataFrame) -> pa.RecordBatch:
    """Normalise kept bronze rows into the typed silver schema."""
    rate = _label(kept["rate_code"], RATE_CODES, "standard")
    names = {"jfk": "JFK", "newark": "Newark"}
    frame = pd.DataFrame(
        {
            "trip_id": kept["trip_id"].astype("string"),
            "vendor_id": kept["vendor_id"].astype("Int16"),
            # Naive UTC here, UTC-tagged by the cast below (pandas warns on tz-aware export).
            "pickup_ts": _timestamps(kept, "pickup_datetime").dt.tz_convert(None),
            "dropoff_ts": _timestamps(kept, "dropoff_datetime").dt.tz_convert(None),
            # A missing count is almost always one passenger (the driver did not key it in).
            "passenger_count": kept["passenger_count"].fillna(1).astype("int16"),
            "trip_distance": kept["trip_distance"].astype("float64"),
            "pickup_zone": kept["pickup_zone"].astype("int16"),
            "dropoff_zone": kept["dropoff_zone"].astype("int16"),
            "rate_code": rate.map(lambda v: names.get(v, v.capitalize())),
            "payment_type": _label(kept["payment_type"], PAYMENT_TYPES, "unknown"),
            "fare_amount": kept["fare_amount"].astype("float64"),
            "tip_amount": kept["tip_amount"].fillna(0.0).astype("float64"),
            "total_amount": kept["total_amount"].astype("float64"),
            "ingest_date": kept["ingest_date"],
        }
    )
    naive = pa.schema(
        [
            f.with_type(pa.timestamp("us")) if pa.types.is_timestamp(f.type) else f
            for f in SILVER_SCHEMA
        ]
    )
    batch = pa.RecordBatch.from_pandas(frame, schema=naive, preserve_index=False)
    return batch.cast(SILVER_SCHEMA)
