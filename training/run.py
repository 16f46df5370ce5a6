"""One training run: load, split, fit, evaluate, log, register, and gate the promotion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mlflow
import structlog

from kernel.domain import Domain
from kernel.integrity import GATE_TAG
from kernel.tracking import unreachable_as_error
from lakehouse.tables import Lakehouse
from training import data, evaluate, models
from training.config import GREATER_IS_BETTER, TrainConfig
from training.promotion import Decision, decide
from training.tracking import Tracker

log = structlog.get_logger(__name__)
Step = Callable[[str], None]


@dataclass(frozen=True)
class TrainResult:
    """What a run produced and decided."""

    run_id: str
    experiment_id: str
    model_name: str
    version: str
    alias: str
    decision: Decision
    metrics: dict[str, float]
    table: str
    table_version: int
    rows: int


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        elif isinstance(value, list):
            flat[f"{prefix}{key}"] = ",".join(map(str, value))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def train(
    config: TrainConfig,
    lake: Lakehouse,
    tracker: Tracker,
    run_name: str | None = None,
    step: Step = lambda _: None,
) -> TrainResult:
    """Run the whole training; raise ConfigError, DataError or TrackingUnavailable."""
    models.validate(config.model)  # bad hyperparameters fail before any data is read
    step("checking the tracking server")
    tracker.connect()
    step("reading the gold table")
    dataset = data.load(lake, config.data)
    features = config.data.features
    train_rows, holdout_rows = data.split(
        dataset.frame,
        config.data.id_column,
        config.data.holdout_fraction,
        config.data.split_salt,
        config.data.max_train_rows,
    )
    x_train, y_train = train_rows[features], train_rows[config.data.target]
    x_holdout, y_holdout = holdout_rows[features], holdout_rows[config.data.target]
    pipeline = models.build(config.model, dataset.numeric, dataset.categorical)

    step(f"fitting {config.model.type} on {len(x_train):,} rows")
    pipeline.fit(x_train, y_train)
    step("evaluating on the holdout")
    holdout_metrics = evaluate.metrics(y_holdout, pipeline.predict(x_holdout))
    train_rmse = evaluate.metrics(y_train, pipeline.predict(x_train))["rmse"]
    residuals = evaluate.residual_plot(y_holdout, pipeline.predict(x_holdout))
    importance, scores = evaluate.importance_plot(pipeline, x_holdout, y_holdout)

    with unreachable_as_error(tracker.uri):
        experiment_id = tracker.experiment(config.experiment)
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
            step("logging the run to MLflow")
            params = _flatten(config.model_dump(mode="json"))
            params.update(
                {
                    "data.version": dataset.version,
                    "data.uri": dataset.uri,
                    "data.rows": len(dataset.frame),
                    "data.train_rows": len(x_train),
                    "data.holdout_rows": len(x_holdout),
                }
            )
            mlflow.log_params(params)
            mlflow.log_metrics({**holdout_metrics, "train_rmse": train_rmse})
            mlflow.log_metrics({f"importance.{k}": v for k, v in scores.items()})
            tracker.log_lineage(dataset, train_rows, holdout_rows, config.data.target)
            mlflow.log_figure(residuals, "plots/residuals.png")
            mlflow.log_figure(importance, "plots/permutation_importance.png")

            step("registering the model")
            lineage = {
                "data.table": dataset.table,
                "data.uri": dataset.uri,
                "data.version": str(dataset.version),
                "data.rows": str(len(dataset.frame)),
            }
            # What the model learned from: serving flags inputs outside it.
            domain = Domain.from_frame(x_train, features)
            version = tracker.log_model(
                pipeline, x_train.head(200), config.model_name, lineage, domain
            )

            step("applying the promotion gate")
            promo = config.promotion
            metric = promo.metric
            champion = tracker.alias_holder(config.model_name, promo.alias)
            champion_score, how = None, ""
            if champion is not None:
                champion_score, how = _score_champion(
                    tracker, config.model_name, champion, metric, x_holdout, y_holdout
                )
                if champion_score is not None:
                    mlflow.log_metric(f"champion_{metric}", champion_score)
            decision = decide(
                metric,
                holdout_metrics[metric],
                champion_score,
                GREATER_IS_BETTER[metric],
                promo.min_improvement,
            )
            if champion is not None and champion_score is None:
                decision = Decision(False, f"kept champion v{champion.version}: {how}")
            elif how:
                decision = Decision(decision.promote, f"{decision.reason} ({how})")
            alias = promo.alias if decision.promote else promo.challenger_alias
            outcome = {
                GATE_TAG: alias,
                "promotion.reason": decision.reason,
                "promotion.previous_champion": champion.version if champion else "none",
            }
            # The gate's mark first: serving loads only marked versions, and follows the alias
            # within seconds of it moving.
            tracker.tag_version(config.model_name, str(version.version), outcome)
            tracker.set_alias(config.model_name, alias, str(version.version))
            mlflow.set_tags({**outcome, "model.version": str(version.version)})
    log.info(
        "training finished",
        run_id=run.info.run_id,
        model=config.model_name,
        version=version.version,
        alias=alias,
        reason=decision.reason,
        **holdout_metrics,
    )
    return TrainResult(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        model_name=config.model_name,
        version=str(version.version),
        alias=alias,
        decision=decision,
        metrics=holdout_metrics,
        table=dataset.table,
        table_version=dataset.version,
        rows=len(dataset.frame),
    )


def _score_champion(
    tracker: Tracker, model_name: str, champion: Any, metric: str, x_holdout: Any, y_holdout: Any
) -> tuple[float | None, str]:
    """Score the champion on this run's holdout, falling back to its own logged metric."""
    try:
        predictions = tracker.score_version(model_name, str(champion.version), x_holdout)
        return evaluate.metrics(y_holdout, predictions)[metric], (
            f"champion v{champion.version} re-scored on this holdout"
        )
    except Exception as exc:  # any failure to load/predict: the schema may have changed
        log.warning("champion could not be re-scored", version=champion.version, error=str(exc))
        logged = tracker.logged_metric(champion.run_id, metric) if champion.run_id else None
        if logged is None:
            return None, f"champion v{champion.version} could not be scored: {exc}"
        return logged, (
            f"champion v{champion.version} could not be re-scored ({type(exc).__name__}); "
            "compared with its own logged holdout metric"
        )
