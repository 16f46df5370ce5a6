"""The training domain of a model's inputs: measured from the training frame, stored as JSON in
the MLmodel metadata, and checked against served columns."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from kernel.domain import METADATA_KEY, Domain, from_metadata

TRAIN = pd.DataFrame(
    {
        "trip_distance": [0.5, 2.0, 12.5],
        "passenger_count": np.array([1, 2, 6], dtype="int16"),
        "is_airport": [False, True, False],
        "pickup_borough": pd.array(["Manhattan", "Queens", "Manhattan"], dtype="string"),
        "rate_code": ["Standard", "JFK", "Standard"],
    }
)
FEATURES = list(TRAIN.columns)


def served(**columns: list[object]) -> dict[str, np.ndarray]:
    return {name: np.asarray(values) for name, values in columns.items()}


def test_numbers_get_their_range_and_strings_and_booleans_their_categories() -> None:
    domain = Domain.from_frame(TRAIN, FEATURES)
    assert domain.to_json() == {
        "trip_distance": {"low": 0.5, "high": 12.5},
        "passenger_count": {"low": 1.0, "high": 6.0},
        "is_airport": {"values": [False, True]},
        "pickup_borough": {"values": ["Manhattan", "Queens"]},
        "rate_code": {"values": ["JFK", "Standard"]},
    }
    # What MLflow stores is JSON: it reads back to the same domain.
    again = Domain.from_json(json.loads(json.dumps(domain.to_json())))
    assert again == domain
    assert from_metadata({METADATA_KEY: domain.to_json(), "other": 1}) == domain
    assert from_metadata(None) is None and from_metadata({"other": 1}) is None


def test_the_new_users_hostile_row_is_outside_on_every_feature_it_bends() -> None:
    domain = Domain.from_frame(TRAIN, FEATURES)
    columns = served(
        trip_distance=[2.0, -5.0, 12.5],
        passenger_count=[1, 99, 6],
        is_airport=[True, False, False],
        pickup_borough=["Queens", "Atlantis", "Manhattan"],
        rate_code=["JFK", "Standard", "Negotiated"],
    )
    outside = domain.outside(columns)
    assert set(outside.masks) == {"trip_distance", "passenger_count", "pickup_borough", "rate_code"}
    assert outside.per_row() == [
        [],
        ["passenger_count", "pickup_borough", "trip_distance"],
        ["rate_code"],
    ]
    assert outside.rows_outside() == 2
    problems = domain.problems(columns, outside)
    assert problems[0] == (
        "column trip_distance: -5.0 at row 1 is outside the training domain (in [0.5, 12.5])"
    )
    assert "'Atlantis' at row 1" in problems[2] and "one of Manhattan, Queens" in problems[2]
    assert len(domain.problems(columns, outside, limit=2)) == 2


def test_values_inside_and_features_not_sent_raise_nothing() -> None:
    domain = Domain.from_frame(TRAIN, FEATURES)
    outside = domain.outside(served(trip_distance=[0.5, 12.5], pickup_borough=["Queens"] * 2))
    assert not outside and outside.rows_outside() == 0 and outside.per_row() == [[], []]


def test_a_long_category_list_is_cut_in_messages() -> None:
    frame = pd.DataFrame({"zone": [f"z{i:02d}" for i in range(30)]})
    text = Domain.from_frame(frame, ["zone"]).features[0].describe()
    assert text.startswith("one of z00, z01") and text.endswith("... (30 in all)")
