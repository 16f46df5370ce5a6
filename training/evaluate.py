"""Holdout metrics and diagnostic plots of a fitted regressor."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless: training runs in Jobs without a display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.inspection import permutation_importance
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
from sklearn.pipeline import Pipeline


def metrics(y_true: pd.Series | np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Return rmse, mae and r2."""
    return {
        "rmse": float(root_mean_squared_error(y_true, y_pred)),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "r2": float(r2_score(y_true, y_pred)),
    }


def residual_plot(y_true: pd.Series, y_pred: np.ndarray, max_points: int = 5_000) -> Figure:
    """Plot residuals against predictions (a deterministic subsample of points)."""
    step = max(1, len(y_pred) // max_points)
    predicted, residual = y_pred[::step], (np.asarray(y_true) - y_pred)[::step]
    figure, (scatter, histogram) = plt.subplots(1, 2, figsize=(11, 4.5))
    scatter.scatter(predicted, residual, s=4, alpha=0.35)
    scatter.axhline(0.0, color="black", linewidth=0.8)
    scatter.set(xlabel="predicted", ylabel="actual - predicted", title="Residuals vs predicted")
    histogram.hist(residual, bins=60)
    histogram.set(xlabel="actual - predicted", ylabel="rows", title="Residual distribution")
    figure.tight_layout()
    return figure


def importance_plot(
    model: Pipeline, features: pd.DataFrame, target: pd.Series, max_rows: int = 2_000
) -> tuple[Figure, dict[str, float]]:
    """Plot permutation importance on a holdout sample; return the figure and the scores."""
    sample = features.iloc[: min(max_rows, len(features))]
    result = permutation_importance(
        model,
        sample,
        target.iloc[: len(sample)],
        n_repeats=3,
        random_state=0,
        scoring="neg_root_mean_squared_error",
    )
    scores = dict(zip(features.columns, result.importances_mean, strict=True))
    ordered = sorted(scores.items(), key=lambda item: item[1])
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(ordered) + 1.5))
    axis.barh([name for name, _ in ordered], [value for _, value in ordered])
    axis.set(xlabel="RMSE increase when shuffled", title="Permutation importance (holdout)")
    figure.tight_layout()
    return figure, {name: float(value) for name, value in scores.items()}
