"""evidently's drift distances, checked against scipy on the same samples: an upgrade that
changes the statistics (or the pandas shim in training/drift.py) fails here."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from training.drift import PREDICTION, measure

BOROUGHS = ["Manhattan", "Brooklyn", "Queens", "Bronx", "Staten Island"]


def sample(rows: int, seed: int, distance_scale: float = 1.0, mix: list[float] | None = None):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "trip_distance": rng.lognormal(0.8, 0.6, rows) * distance_scale,
            "pickup_borough": rng.choice(BOROUGHS, rows, p=mix or [0.6, 0.15, 0.15, 0.05, 0.05]),
            PREDICTION: rng.normal(15, 4, rows),
        }
    )


def scipy_js(reference: pd.Series, current: pd.Series) -> float:
    keys = sorted(set(reference) | set(current))
    ref = reference.value_counts(normalize=True).reindex(keys, fill_value=0).to_numpy()
    cur = current.value_counts(normalize=True).reindex(keys, fill_value=0).to_numpy()
    return float(jensenshannon(ref, cur))


def test_distances_are_scipys_and_a_shift_crosses_the_threshold() -> None:
    reference = sample(5_000, 1)
    shifted = sample(1_000, 2, distance_scale=3.0, mix=[0.05, 0.05, 0.1, 0.4, 0.4])
    measured = measure(reference, shifted, ["trip_distance"], ["pickup_borough"], 0.1)

    distance = measured.column("trip_distance")
    expected = wasserstein_distance(reference.trip_distance, shifted.trip_distance) / np.std(
        reference.trip_distance
    )
    assert distance.method.startswith("Wasserstein")
    assert abs(distance.score - expected) < 1e-6
    borough = measured.column("pickup_borough")
    assert borough.method.startswith("Jensen-Shannon")
    assert abs(borough.score - scipy_js(reference.pickup_borough, shifted.pickup_borough)) < 1e-3
    assert distance.drifted and borough.drifted
    assert not measured.column(PREDICTION).drifted  # the prediction did not move
    assert "<html" in measured.snapshot.get_html_str(as_iframe=False)[:2000].lower()


def test_samples_of_the_same_traffic_stay_under_the_threshold() -> None:
    reference = sample(5_000, 1)
    scores = [
        c.score
        for seed in range(3, 8)
        for c in measure(reference, sample(1_000, seed), ["trip_distance"],
                         ["pickup_borough"], 0.1).columns
    ]  # fmt: skip
    assert len(scores) == 15 and max(scores) < 0.1


def test_a_small_window_raises_the_threshold_to_what_its_noise_scores() -> None:
    reference = sample(5_000, 1)
    small = measure(reference, sample(60, 9), ["trip_distance"], ["pickup_borough"], 0.1)
    large = measure(reference, sample(2_000, 9), ["trip_distance"], ["pickup_borough"], 0.1)
    assert all(c.threshold > 0.1 and not c.drifted for c in small.columns)
    assert all(c.threshold == 0.1 for c in large.columns)  # 2,000 rows: noise is far below
    fixed = measure(reference, sample(60, 9), ["trip_distance"], ["pickup_borough"], 0.1,
                    calibrate=False)  # fmt: skip
    assert all(c.threshold == 0.1 for c in fixed.columns)


def test_a_small_reference_is_still_measured_with_distances() -> None:
    # evidently's default for <= 1,000 reference rows is a p-value test (small means drift).
    reference, same = sample(800, 1), sample(800, 2)
    shifted = sample(800, 3, distance_scale=3.0, mix=[0.05, 0.05, 0.1, 0.4, 0.4])
    quiet = measure(reference, same, ["trip_distance"], ["pickup_borough"], 0.1)
    loud = measure(reference, shifted, ["trip_distance"], ["pickup_borough"], 0.1)
    assert {c.method for c in quiet.columns} == {
        "Wasserstein distance (normed)",
        "Jensen-Shannon distance",
    }
    assert not any(c.drifted for c in quiet.columns)
    assert loud.column("trip_distance").drifted and loud.column("pickup_borough").drifted


def test_fresh_traffic_against_a_small_reference_stays_under_the_null_threshold() -> None:
    # One weekday of a short training set: 600 reference rows, windows of 400 new rows of the
    # same traffic. A null drawn from the reference itself shares its rows and scores low; the
    # null of two disjoint parts counts the reference's own noise too.
    from training.drift import null_thresholds

    false_alarms = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        ref = pd.DataFrame({"hour": rng.integers(0, 24, 600).astype(float),
                            PREDICTION: rng.normal(size=600)})  # fmt: skip
        window = rng.integers(0, 24, 400).astype(float)
        limit = null_thresholds(ref, 400, ["hour"], [], 0.0, seed=seed)["hour"]
        score = wasserstein_distance(ref["hour"], window) / np.std(ref["hour"])
        false_alarms += score >= limit
    assert false_alarms <= 2, f"{false_alarms} of 40 unchanged windows crossed the threshold"
