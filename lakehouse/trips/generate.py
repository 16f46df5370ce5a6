"""Generate the raw trip feed deterministically, one daily batch at a time, with realistic dirt.

Batch `i` depends only on (seed, i), so any batch can be regenerated alone and the feed is the
same whatever the batch processing order. A batch is a day of trips; duplicates (re-sent
records) stay within their day, as in real feeds.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from lakehouse.trips.zones import AIRPORTS, JFK, N_ZONES, NEWARK, zone_table

START_DATE = dt.date(2024, 1, 1)

BRONZE_SCHEMA = pa.schema(
    [
        ("trip_id", pa.string()),
        ("vendor_id", pa.int64()),
        ("pickup_datetime", pa.string()),
        ("dropoff_datetime", pa.string()),
        ("passenger_count", pa.float64()),
        ("trip_distance", pa.float64()),
        ("pickup_zone", pa.int64()),
        ("dropoff_zone", pa.int64()),
        ("rate_code", pa.string()),
        ("payment_type", pa.string()),
        ("fare_amount", pa.float64()),
        ("tip_amount", pa.float64()),
        ("total_amount", pa.float64()),
        ("source_file", pa.string()),
        ("ingest_date", pa.date32()),
    ]
)


@dataclass(frozen=True)
class DirtRates:
    """Fraction of rows affected by each kind of dirt in the raw feed."""

    duplicate: float = 0.015
    null_fare: float = 0.005
    null_passengers: float = 0.005
    null_dropoff: float = 0.003
    malformed_pickup: float = 0.005
    negative_distance: float = 0.004
    zero_distance: float = 0.003
    absurd_distance: float = 0.001
    bad_passengers: float = 0.004
    bad_zone: float = 0.003
    negative_fare: float = 0.003
    dropoff_before_pickup: float = 0.002
    messy_labels: float = 0.3


def batch_sizes(scale: int, rows_per_batch: int) -> list[int]:
    """Split `scale` rows into daily batches of at most `rows_per_batch`."""
    full, rest = divmod(scale, rows_per_batch)
    return [rows_per_batch] * full + ([rest] if rest else [])


def generate_batches(
    scale: int, seed: int, rows_per_batch: int, dirt: DirtRates | None = None
) -> Iterator[pa.RecordBatch]:
    """Yield the bronze feed as record batches, one per day."""
    for index, size in enumerate(batch_sizes(scale, rows_per_batch)):
        yield generate_batch(index, size, seed, dirt or DirtRates())


def _speed_mph(hour: np.ndarray, manhattan: np.ndarray, weekend: bool) -> np.ndarray:
    speed = np.where(manhattan, 11.0, 18.0)
    rush = ((hour >= 7) & (hour <= 9)) | ((hour >= 16) & (hour <= 19))
    if not weekend:
        speed = np.where(rush, speed * 0.65, speed)
    return np.where((hour >= 22) | (hour <= 5), speed * 1.45, speed)


def generate_batch(index: int, size: int, seed: int, dirt: DirtRates) -> pa.RecordBatch:
    """Return day `index` of the feed: `size` rows, duplicates included."""
    rng = np.random.default_rng([seed, index])
    day = START_DATE + dt.timedelta(days=index)
    weekend = day.weekday() >= 5
    n_dup = int(size * dirt.duplicate)
    n = size - n_dup
    borough, zx, zy = zone_table()

    zone_weights = np.where(borough == 1, 4.0, 1.0)
    zone_weights[0] = 0.0
    zone_weights[list(AIRPORTS)] = 6.0
    zone_weights /= zone_weights.sum()
    pickup_zone = rng.choice(N_ZONES + 1, size=n, p=zone_weights)
    dropoff_zone = rng.choice(N_ZONES + 1, size=n, p=zone_weights)
    straight = np.hypot(zx[pickup_zone] - zx[dropoff_zone], zy[pickup_zone] - zy[dropoff_zone])
    distance = np.where(
        pickup_zone == dropoff_zone,
        rng.lognormal(-0.2, 0.5, n),
        straight * rng.uniform(1.15, 1.45, n),
    )
    distance = np.maximum(distance, 0.1).round(2)  # the meter never reads less

    hour_weights = np.array(
        [2, 1.5, 1, 0.7, 0.5, 0.7, 2, 4, 5, 5, 4.5, 4.5, 5, 5, 5, 5.5, 6, 6.5, 7, 7, 6, 5, 4, 3]
    )
    hour = rng.choice(24, size=n, p=hour_weights / hour_weights.sum())
    seconds = hour * 3600 + rng.integers(0, 3600, n)
    manhattan = (borough[pickup_zone] == 1) | (borough[dropoff_zone] == 1)
    minutes = distance / _speed_mph(hour, manhattan, weekend) * 60 * rng.lognormal(0, 0.15, n)
    minutes = np.maximum(minutes, 1.5)

    airport_pair = np.isin(pickup_zone, [JFK]) ^ np.isin(dropoff_zone, [JFK])
    newark = (pickup_zone == NEWARK) | (dropoff_zone == NEWARK)
    roll = rng.random(n)
    rate_code = np.full(n, "Standard", dtype=object)
    rate_code[airport_pair & manhattan & (roll < 0.9)] = "JFK"
    rate_code[newark & (roll < 0.9)] = "Newark"
    rate_code[(rate_code == "Standard") & (roll > 0.995)] = "Negotiated"

    metered = 3.0 + 1.75 * distance + 0.70 * minutes
    metered += np.where((hour >= 20) | (hour <= 5), 1.0, 0.0)
    if not weekend:
        metered += np.where((hour >= 16) & (hour <= 19), 2.5, 0.0)
    fare = np.select(
        [rate_code == "JFK", rate_code == "Newark", rate_code == "Negotiated"],
        [np.full(n, 70.0), metered + 17.5, metered * rng.uniform(0.8, 1.3, n)],
        metered,
    ).round(2)

    payment = rng.choice(
        np.array(["card", "cash", "no charge", "dispute", "unknown"], dtype=object),
        size=n,
        p=[0.70, 0.25, 0.02, 0.01, 0.02],
    )
    tip = np.where(payment == "card", fare * rng.uniform(0.1, 0.25, n), 0.0).round(2)
    passengers = rng.choice(np.arange(1, 7), size=n, p=[0.70, 0.15, 0.05, 0.03, 0.04, 0.03]).astype(
        float
    )
    vendor = rng.integers(1, 3, n).astype(float)

    midnight = np.datetime64(day.isoformat(), "s")
    pickup_ts = midnight + seconds.astype("timedelta64[s]")
    dropoff_ts = pickup_ts + np.round(minutes * 60).astype("timedelta64[s]")
    pickup = np.char.replace(np.datetime_as_string(pickup_ts, unit="s"), "T", " ").astype(object)
    dropoff = np.char.replace(np.datetime_as_string(dropoff_ts, unit="s"), "T", " ").astype(object)
    trip_id = np.char.add(f"{seed:x}-{index:05d}-", np.char.zfill(np.arange(n).astype(str), 7))

    columns: dict[str, np.ndarray] = {
        "trip_id": trip_id.astype(object),
        "vendor_id": vendor,
        "pickup_datetime": pickup,
        "dropoff_datetime": dropoff,
        "passenger_count": passengers,
        "trip_distance": distance,
        "pickup_zone": pickup_zone.astype(float),
        "dropoff_zone": dropoff_zone.astype(float),
        "rate_code": rate_code,
        "payment_type": payment,
        "fare_amount": fare,
        "tip_amount": tip,
        "total_amount": (fare + tip + 0.5).round(2),
    }
    _add_dirt(columns, rng, dirt)
    if n_dup:
        copies = rng.choice(n, size=n_dup, replace=False)
        order = np.concatenate([np.arange(n), copies])
        order.sort(kind="stable")
        columns = {name: values[order] for name, values in columns.items()}

    arrays = [
        _to_arrow(columns[field.name], field.type)
        for field in BRONZE_SCHEMA
        if field.name in columns
    ]
    size_out = len(columns["trip_id"])
    arrays.append(pa.array([f"trips_{day.isoformat()}.csv"] * size_out, pa.string()))
    arrays.append(pa.array([day] * size_out, pa.date32()))
    return pa.RecordBatch.from_arrays(arrays, schema=BRONZE_SCHEMA)


def _pick(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    return rng.choice(n, size=int(n * rate), replace=False)


def _add_dirt(columns: dict[str, np.ndarray], rng: np.random.Generator, dirt: DirtRates) -> None:
    """Corrupt the clean feed in place the way real feeds are corrupted."""
    n = len(columns["trip_id"])
    columns["fare_amount"][_pick(rng, n, dirt.null_fare)] = np.nan
    columns["passenger_count"][_pick(rng, n, dirt.null_passengers)] = np.nan
    columns["dropoff_datetime"][_pick(rng, n, dirt.null_dropoff)] = None
    malformed = np.array(["2024-02-30 25:61:00", "N/A", "", "1700000000"], dtype=object)
    rows = _pick(rng, n, dirt.malformed_pickup)
    columns["pickup_datetime"][rows] = rng.choice(malformed, size=len(rows))
    rows = _pick(rng, n, dirt.negative_distance)
    columns["trip_distance"][rows] = -columns["trip_distance"][rows]
    columns["trip_distance"][_pick(rng, n, dirt.zero_distance)] = 0.0
    columns["trip_distance"][_pick(rng, n, dirt.absurd_distance)] = 12_000.0
    rows = _pick(rng, n, dirt.bad_passengers)
    columns["passenger_count"][rows] = rng.choice([0.0, 9.0], size=len(rows))
    rows = _pick(rng, n, dirt.bad_zone)
    columns["pickup_zone"][rows] = rng.choice([0.0, 264.0, 999.0], size=len(rows))
    rows = _pick(rng, n, dirt.negative_fare)
    columns["fare_amount"][rows] = -np.abs(columns["fare_amount"][rows])
    rows = _pick(rng, n, dirt.dropoff_before_pickup)
    columns["dropoff_datetime"][rows] = columns["pickup_datetime"][rows]
    columns["pickup_datetime"][rows] = _shift_minutes(columns["dropoff_datetime"][rows], 17)
    messy = _pick(rng, n, dirt.messy_labels)
    columns["payment_type"][messy] = [f" {v.upper()} " for v in columns["payment_type"][messy]]
    messy = _pick(rng, n, dirt.messy_labels)
    columns["rate_code"][messy] = [v.lower() + " " for v in columns["rate_code"][messy]]


def _shift_minutes(values: np.ndarray, minutes: int) -> np.ndarray:
    out = values.copy()
    for i, value in enumerate(values):
        try:
            moved = np.datetime64(str(value).replace(" ", "T"), "s") + np.timedelta64(minutes, "m")
            out[i] = str(moved).replace("T", " ")
        except ValueError:
            out[i] = value  # already malformed or missing: leave it as the feed sent it
    return out


def _to_arrow(values: np.ndarray, type_: pa.DataType) -> pa.Array:
    if pa.types.is_integer(type_):
        mask = np.isnan(values)
        return pa.array(np.nan_to_num(values).astype(np.int64), type=type_, mask=mask)
    if pa.types.is_floating(type_):
        return pa.array(values, type=type_, from_pandas=True)
    return pa.array(values.tolist(), type=type_)
