"""Silver cleaning rules, one dirty row at a time."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
import pytest

from lakehouse.trips import clean


def clean_row(trip_id: str, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "trip_id": trip_id,
        "vendor_id": 1,
        "pickup_datetime": "2024-01-01 08:00:00",
        "dropoff_datetime": "2024-01-01 08:20:00",
        "passenger_count": 1.0,
        "trip_distance": 3.2,
        "pickup_zone": 161,
        "dropoff_zone": 236,
        "rate_code": "Standard",
        "payment_type": "card",
        "fare_amount": 18.5,
        "tip_amount": 3.0,
        "total_amount": 22.0,
        "source_file": "trips_2024-01-01.csv",
        "ingest_date": dt.date(2024, 1, 1),
    }
    row.update(changes)
    return row


DIRTY: dict[str, dict[str, Any]] = {
    "missing_required": {"fare_amount": None},
    "malformed_timestamp": {"pickup_datetime": "2024-02-30 25:61:00"},
    "implausible_duration": {"dropoff_datetime": "2024-01-01 07:50:00"},
    "distance_out_of_range": {"trip_distance": -1.4},
    "unknown_zone": {"pickup_zone": 264},
    "passenger_count_out_of_range": {"passenger_count": 9.0},
    "fare_out_of_range": {"fare_amount": -12.0},
}


def test_each_rule_rejects_exactly_its_dirty_row_and_keeps_clean_ones() -> None:
    rows = [clean_row("ok-1"), clean_row("ok-2")]
    rows += [clean_row(f"bad-{rule}", **change) for rule, change in DIRTY.items()]
    rows.append(clean_row("ok-1", fare_amount=99.0))  # a re-sent copy of ok-1

    kept, rejected, counts = clean.apply_rules(pd.DataFrame(rows))

    assert list(kept["trip_id"]) == ["ok-1", "ok-2"]
    assert kept.iloc[0]["fare_amount"] == 18.5  # the first copy wins
    expected = {rule: 1 for rule in DIRTY} | {"duplicate_trip_id": 1}
    assert counts == expected
    by_rule = dict(zip(rejected["rejected_by"], rejected["trip_id"], strict=True))
    assert by_rule["duplicate_trip_id"] == "ok-1"
    for rule in DIRTY:
        assert by_rule[rule] == f"bad-{rule}"


@pytest.mark.parametrize(
    ("change", "kept"),
    [
        ({"fare_amount": clean.MIN_FARE}, True),
        ({"fare_amount": 2.49}, False),
        ({"fare_amount": clean.MAX_FARE}, True),
        ({"trip_distance": 100.0}, True),
        ({"trip_distance": 100.01}, False),
        ({"trip_distance": 0.0}, False),
        ({"dropoff_datetime": "2024-01-01 08:01:00"}, True),
        ({"dropoff_datetime": "2024-01-01 08:00:59"}, False),
        ({"dropoff_datetime": "2024-01-01 14:00:00"}, True),
        ({"dropoff_datetime": "2024-01-01 14:00:01"}, False),
        ({"pickup_zone": 263}, True),
        ({"dropoff_zone": 0}, False),
        ({"passenger_count": 6.0}, True),
        ({"passenger_count": 0.0}, False),
        ({"pickup_datetime": "N/A"}, False),
        ({"pickup_datetime": "1700000000"}, False),
        ({"dropoff_datetime": None}, False),
    ],
)
def test_rule_boundaries(change: dict[str, object], kept: bool) -> None:
    result, _, _ = clean.apply_rules(pd.DataFrame([clean_row("t", **change)]))
    assert (len(result) == 1) is kept


def test_missing_passenger_count_is_imputed_as_one() -> None:
    kept, _, counts = clean.apply_rules(pd.DataFrame([clean_row("t", passenger_count=None)]))
    silver = clean.to_silver(kept).to_pylist()
    assert sum(counts.values()) == 0
    assert silver[0]["passenger_count"] == 1


def test_labels_are_normalised_and_unknown_labels_are_named_so() -> None:
    rows = [
        clean_row("a", payment_type="  CARD ", rate_code="jfk "),
        clean_row("b", payment_type="bitcoin", rate_code="NEWARK"),
        clean_row("c", payment_type=" no charge", rate_code="warp"),
    ]
    kept, _, _ = clean.apply_rules(pd.DataFrame(rows))
    silver = clean.to_silver(kept).to_pylist()
    assert [r["payment_type"] for r in silver] == ["card", "unknown", "no charge"]
    assert [r["rate_code"] for r in silver] == ["JFK", "Newark", "Standard"]


def test_silver_timestamps_are_utc_and_typed() -> None:
    kept, _, _ = clean.apply_rules(pd.DataFrame([clean_row("t")]))
    batch = clean.to_silver(kept)
    assert batch.schema == clean.SILVER_SCHEMA
    pickup = batch.to_pylist()[0]["pickup_ts"]
    assert pickup == dt.datetime(2024, 1, 1, 8, 0, tzinfo=dt.UTC)
