"""Everything training says to MLflow: lineage, registry versions and aliases."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import mlflow
import pandas as pd
import sklearn
from mlflow.data.delta_dataset_source import DeltaDatasetSource
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline

from kernel.domain import METADATA_KEY, Domain
from kernel.integrity import DIGEST_PARAM, downloaded_version
from kernel.tracking import TrackingStore
from training.data import Dataset


class Tracker(TrackingStore):
    """The tracking store with what training records: lineage, model versions, aliases."""

    def alias_holder(self, model_name: str, alias: str) -> ModelVersion | None:
        """Return the version holding `alias`, or None if the model or alias does not exist."""
        try:
            return self.client.get_model_version_by_alias(model_name, alias)
        except MlflowException as exc:
            if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
                return None
            raise

    def score_version(self, model_name: str, version: str, frame: pd.DataFrame) -> Any:
        """Load a registered version and predict `frame` with it."""
        model = mlflow.pyfunc.load_model(f"models:/{model_name}/{version}")
        return model.predict(frame)

    def logged_metric(self, run_id: str, metric: str) -> float | None:
        """Return a metric of a run, or None if it was not logged."""
        return self.client.get_run(run_id).data.metrics.get(metric)

    def log_lineage(
        self, dataset: Dataset, train: pd.DataFrame, holdout: pd.DataFrame, target: str
    ) -> None:
        """Record which table version and rows the model learned from and was judged on."""
        source = DeltaDatasetSource(path=dataset.uri, delta_table_version=dataset.version)
        name = f"{dataset.table}@v{dataset.version}"
        for context, frame in (("training", train), ("holdout", holdout)):
            with _integer_columns_are_deliberate():
                dataset_input = from_pandas(frame, source=source, targets=target, name=name)
                mlflow.log_input(dataset_input, context=context)

    def log_model(
        self,
        pipeline: Pipeline,
        example: pd.DataFrame,
        model_name: str,
        tags: dict[str, str],
        domain: Domain,
    ) -> ModelVersion:
        """Log the fitted pipeline with signature, input example and the domain of its inputs
        (in the MLmodel metadata, which serving reads); register a new version.

        The digest of the stored artifact files becomes a run parameter (immutable) and a version
        tag: serving loads the version only if what it downloads hashes to it.
        """
        with _integer_columns_are_deliberate():
            signature = infer_signature(example, pipeline.predict(example))
            info = self._log_sklearn(pipeline, signature, example, model_name, domain)
        version = str(info.registered_model_version)
        digest = self.stored_digest(model_name, version)
        mlflow.log_param(DIGEST_PARAM, digest)
        for key, value in {**tags, DIGEST_PARAM: digest}.items():
            self.client.set_model_version_tag(model_name, version, key, value)
        return self.client.get_model_version(model_name, version)

    def stored_digest(self, model_name: str, version: str) -> str:
        """Download a version's artifact files as serving will, and return their digest."""
        with downloaded_version(model_name, version) as (_, digest):
            return digest

    def _log_sklearn(
        self,
        pipeline: Pipeline,
        signature: Any,
        example: pd.DataFrame,
        model_name: str,
        domain: Domain,
    ) -> Any:
        return mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature,
            input_example=example.head(5),
            registered_model_name=model_name,
            metadata={METADATA_KEY: domain.to_json()},
            # Tree models fail skops' safe loader unless every type is trusted by hand;
            # the registry is our own, so cloudpickle is acceptable here.
            serialization_format="cloudpickle",
            pip_requirements=[f"scikit-learn=={sklearn.__version__}", "cloudpickle", "pandas"],
        )

    def set_alias(self, model_name: str, alias: str, version: str) -> None:
        """Point `alias` at `version` (moving it off any other version)."""
        self.client.set_registered_model_alias(model_name, alias, version)

    def tag_version(self, model_name: str, version: str, tags: dict[str, str]) -> None:
        """Set tags on a registered version."""
        for key, value in tags.items():
            self.client.set_model_version_tag(model_name, version, key, value)


@contextlib.contextmanager
def _integer_columns_are_deliberate() -> Iterator[None]:
    """Silence MLflow's hint about integer columns: our integer features are never missing."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Inferred schema contains integer")
        yield
