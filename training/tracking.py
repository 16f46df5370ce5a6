"""Everything training says to MLflow: runs, lineage, registry versions and aliases."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import mlflow
import pandas as pd
import sklearn
import structlog
from mlflow.data.delta_dataset_source import DeltaDatasetSource
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException, RestException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from requests.exceptions import ConnectionError as RequestsConnectionError
from sklearn.pipeline import Pipeline

from lakehouse.config import TrackingSettings
from lakehouse.errors import TrackingUnavailable
from training.data import Dataset

log = structlog.get_logger(__name__)


class Tracker:
    """An MLflow tracking store and model registry, checked for reachability up front."""

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self.uri = settings.uri
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        """Return the client; connect() must have been called."""
        if self._client is None:
            raise RuntimeError("Tracker.connect() was not called")
        return self._client

    def connect(self) -> None:
        """Check the server answers /health, then point MLflow at it."""
        if self.settings.is_server:
            health = f"{self.uri.rstrip('/')}/health"
            try:
                response = httpx.get(health, timeout=self.settings.tracking_timeout_s)
            except httpx.HTTPError as exc:
                raise TrackingUnavailable(
                    f"MLflow tracking server {self.uri} is unreachable: {exc}"
                ) from exc
            if response.status_code != 200:
                raise TrackingUnavailable(
                    f"MLflow tracking server {self.uri} answered {response.status_code} on /health"
                )
        else:
            self.settings.home.mkdir(parents=True, exist_ok=True)
        # MLflow logs at INFO on its own handler (migrations, hints); ours says what matters.
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        # The cloudpickle choice is deliberate (see log_model); do not warn on every run.
        logging.getLogger("mlflow.sklearn").setLevel(logging.ERROR)
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        self._client = MlflowClient(self.uri, self.uri)

    def experiment(self, name: str) -> str:
        """Return the experiment id, creating it (with a local artifact root for sqlite)."""
        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            return str(existing.experiment_id)
        location = None
        if not self.settings.is_server:
            location = (self.settings.artifact_root / name).as_uri()
        return str(self.client.create_experiment(name, artifact_location=location))

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
        self, pipeline: Pipeline, example: pd.DataFrame, model_name: str, tags: dict[str, str]
    ) -> ModelVersion:
        """Log the fitted pipeline with signature and input example; register a new version."""
        with _integer_columns_are_deliberate():
            signature = infer_signature(example, pipeline.predict(example))
            info = self._log_sklearn(pipeline, signature, example, model_name)
        version = str(info.registered_model_version)
        for key, value in tags.items():
            self.client.set_model_version_tag(model_name, version, key, value)
        return self.client.get_model_version(model_name, version)

    def _log_sklearn(
        self, pipeline: Pipeline, signature: Any, example: pd.DataFrame, model_name: str
    ) -> Any:
        return mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=signature,
            input_example=example.head(5),
            registered_model_name=model_name,
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


@contextlib.contextmanager
def unreachable_as_error(uri: str) -> Iterator[None]:
    """Report a tracking server that goes away mid-run as TrackingUnavailable."""
    try:
        yield
    except RequestsConnectionError as exc:
        raise TrackingUnavailable(f"lost the MLflow tracking server {uri}: {exc}") from exc
    except RestException:
        raise
    except MlflowException as exc:
        if "Max retries exceeded" in str(exc) or "Connection refused" in str(exc):
            raise TrackingUnavailable(f"lost the MLflow tracking server {uri}: {exc}") from exc
        raise
