"""Drift of served inputs and predictions from a model's training data, measured with evidently.

Why evidently: of the libraries the data-loop issue names it is the one that resolves with our
pins (whylogs pins platformdirs<4; nannyml brings FLAML, LightGBM<4.6, kaleido and segment
analytics), it chooses a distance per column suited to its type and size (for a reference of
more than 1,000 rows: Wasserstein distance normed by the reference's spread for numbers,
Jensen-Shannon distance for categories; both are effect sizes, so a large window of unchanged
traffic does not alarm the way p-values would), and it renders the HTML report we log to MLflow.
A distance measured on a small window is noisy, so each column's threshold is the larger of the
one given and what unchanged traffic scores at the window's size: NULL_MARGIN times the largest
distance between two disjoint parts of the reference, one of that many rows, over NULL_DRAWS
random splits (computed with scipy, the same distances; at 1,000 rows of the trip feed this
stays at 0.1).
evidently 0.7 imports one pandas helper that pandas 3 removed, in a legacy module the report
never calls into; `_evidently()` supplies it before the import (tests/training/test_drift.py
checks the distances against scipy, so an upgrade that changes them fails there).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

PREDICTION = "prediction"
# The methods asked of evidently, by the names its report shows.
METHODS = {
    "wasserstein": "Wasserstein distance (normed)",
    "jensenshannon": "Jensen-Shannon distance",
}
NULL_DRAWS = 100
NULL_MARGIN = 1.2


@dataclass(frozen=True)
class ColumnDrift:
    """One column's distance between the window and the reference, and its threshold."""

    column: str
    method: str
    score: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return bool(self.score >= self.threshold)  # NaN: not measurable, not drifted


@dataclass(frozen=True)
class Measured:
    """Every column's drift and the report that shows it."""

    columns: list[ColumnDrift]
    snapshot: Any  # evidently Snapshot: save_html(), dict()

    def column(self, name: str) -> ColumnDrift:
        return next(c for c in self.columns if c.column == name)


def measure(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    threshold: float,
    calibrate: bool = True,
) -> Measured:
    """Compare `current` with `reference` column by column (features and `prediction`).

    With `calibrate`, a column's threshold rises above `threshold` to what samples of the
    reference of the window's size score (see the module docstring).
    """
    thresholds = {c: threshold for c in [*numeric, *categorical, PREDICTION]}
    if calibrate:
        thresholds = null_thresholds(reference, len(current), numeric, categorical, threshold)
    with _quiet():
        return _measure(reference, current, numeric, categorical, thresholds)


def null_thresholds(
    reference: pd.DataFrame,
    rows: int,
    numeric: list[str],
    categorical: list[str],
    threshold: float,
    draws: int = NULL_DRAWS,
    seed: int = 0,
) -> dict[str, float]:
    """Per column, the larger of `threshold` and NULL_MARGIN x the largest distance between two
    disjoint parts of the reference, `rows` rows (at most half) and the rest, over `draws` random
    splits: no drift, only sampling.

    Two disjoint parts, not a sample against the whole: the window is new traffic compared with
    a reference that is itself a finite sample, and both sides' noise counts. A sample drawn from
    the reference it is compared with shares its rows and scores low: on a small reference (one
    weekday of a short training set) unchanged traffic crossed that threshold.
    """
    if len(reference) < 2:
        return {c: threshold for c in [*numeric, *categorical, PREDICTION]}
    rng = np.random.default_rng(seed)
    size = max(1, min(rows, len(reference) // 2))
    splits = [rng.permutation(len(reference)) for _ in range(draws)]
    picks = [(order[:size], order[size:]) for order in splits]
    out = {}
    for name in [*numeric, PREDICTION]:
        values = reference[name].to_numpy(float)
        spread = max(float(np.std(values)), 0.001)  # evidently's floor for a constant column
        worst = max(wasserstein_distance(values[a], values[b]) for a, b in picks) / spread
        out[name] = max(threshold, NULL_MARGIN * worst)
    for name in categorical:
        codes = np.unique(reference[name].astype(str).to_numpy(), return_inverse=True)[1]
        width = int(codes.max()) + 1 if len(codes) else 1
        worst = max(
            float(jensenshannon(np.bincount(codes[a], minlength=width) / len(a),
                                np.bincount(codes[b], minlength=width) / len(b)))
            for a, b in picks
        )  # fmt: skip
        out[name] = max(threshold, NULL_MARGIN * worst)
    return out


def _measure(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    thresholds: dict[str, float],
) -> Measured:
    evidently = _evidently()
    definition = evidently.DataDefinition(
        numerical_columns=[*numeric, PREDICTION], categorical_columns=categorical
    )
    columns = [*numeric, *categorical, PREDICTION]
    report = evidently.Report(
        [
            evidently.DataDriftPreset(
                columns=columns,
                # Distances at every size: evidently's default for a reference of 1,000 rows
                # or fewer is a p-value test, whose score means the opposite.
                num_method="wasserstein",
                cat_method="jensenshannon",
                per_column_threshold=thresholds,
            )
        ],
        include_tests=False,
    )
    snapshot = report.run(
        current_data=evidently.Dataset.from_pandas(
            current[columns].reset_index(drop=True), data_definition=definition
        ),
        reference_data=evidently.Dataset.from_pandas(
            reference[columns].reset_index(drop=True), data_definition=definition
        ),
    )
    drifts = []
    for metric in snapshot.dict()["metrics"]:
        config = metric.get("config", {})
        if not str(config.get("type", "")).endswith(":ValueDrift"):
            continue
        score = float(metric["value"])  # NaN when a reference column is constant
        drifts.append(
            ColumnDrift(
                column=str(config["column"]),
                method=METHODS.get(str(config["method"]), str(config["method"])),
                score=score,
                threshold=float(config["threshold"]),
            )
        )
    return Measured(drifts, snapshot)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """evidently's own deprecation notices (litestar, pandas) and numpy's divide-by-zero of a
    constant column's correlation: nothing a user of the monitor can act on."""
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore")
        yield


def _evidently() -> Any:
    """Import evidently's report API (a pandas 3 shim first, see the module docstring)."""
    import pandas.core.dtypes.common as common

    if not hasattr(common, "infer_dtype_from_object"):
        common.infer_dtype_from_object = lambda dtype: pd.api.types.pandas_dtype(dtype).type
    import evidently
    from evidently.presets import DataDriftPreset

    return _Api(evidently.Report, evidently.Dataset, evidently.DataDefinition, DataDriftPreset)


@dataclass(frozen=True)
class _Api:
    Report: Any
    Dataset: Any
    DataDefinition: Any
    DataDriftPreset: Any
