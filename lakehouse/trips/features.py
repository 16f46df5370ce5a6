"""Gold features: what is known when a trip starts, plus the fare to predict."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.trips.zones import AIRPORTS, borough_names

FEATURES_VERSION = "1"
TARGET = "fare_amount"

GOLD_SCHEMA = pa.schema(
    [
        pa.field("trip_id", pa.string(), nullable=False),
        pa.field("pickup_ts", pa.timestamp("us", tz="UTC")),
        pa.field("trip_distance", pa.float64()),
        pa.field("passenger_count", pa.int16()),
        pa.field("pickup_hour", pa.int16()),
        pa.field("pickup_dow", pa.int16()),
        pa.field("is_weekend", pa.bool_()),
        pa.field("pickup_borough", pa.string()),
        pa.field("dropoff_borough", pa.string()),
        pa.field("is_airport", pa.bool_()),
        pa.field("rate_code", pa.string()),
        pa.field(TARGET, pa.float64()),
    ]
)
FEATURES = [f.name for f in GOLD_SCHEMA if f.name not in {"trip_id", "pickup_ts", TARGET}]


def to_gold(silver: pa.RecordBatch) -> pa.RecordBatch:
    """Derive model-ready features from a silver batch."""
    pickup_ts = silver.column("pickup_ts")
    pickup_zone = silver.column("pickup_zone").to_numpy(zero_copy_only=False)
    dropoff_zone = silver.column("dropoff_zone").to_numpy(zero_copy_only=False)
    # ISO weekday 1..7 -> 0 = Monday, so the numbers match Python's datetime.weekday().
    dow = pc.subtract(pc.iso_calendar(pickup_ts).field("iso_day_of_week"), 1)
    columns = {
        "trip_id": silver.column("trip_id"),
        "pickup_ts": pickup_ts,
        "trip_distance": silver.column("trip_distance"),
        "passenger_count": silver.column("passenger_count"),
        "pickup_hour": pc.cast(pc.hour(pickup_ts), pa.int16()),
        "pickup_dow": pc.cast(dow, pa.int16()),
        "is_weekend": pc.greater_equal(dow, 5),
        "pickup_borough": pa.array(borough_names(pickup_zone), pa.string()),
        "dropoff_borough": pa.array(borough_names(dropoff_zone), pa.string()),
        "is_airport": pa.array(
            np.isin(pickup_zone, AIRPORTS) | np.isin(dropoff_zone, AIRPORTS), pa.bool_()
        ),
        "rate_code": silver.column("rate_code"),
        TARGET: silver.column(TARGET),
    }
    return pa.RecordBatch.from_arrays(
        [pc.cast(columns[f.name], f.type) for f in GOLD_SCHEMA], schema=GOLD_SCHEMA
    )
