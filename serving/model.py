"""A registered model version loaded for serving, and how to find the version behind an alias."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from serving.schema import InputSchema


@dataclass(frozen=True)
class LoadedModel:
    """One immutable model version; swapping versions means swapping the whole object."""

    name: str
    version: str
    schema: InputSchema
    predictor: Any  # mlflow.pyfunc.PyFuncModel, or anything with predict(frame)

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Predict a typed frame; returns one value per row."""
        return np.asarray(self.predictor.predict(frame)).reshape(len(frame), -1)[:, 0]


class Registry(Protocol):
    """Where the host finds the version behind an alias and loads it."""

    def version_of(self, name: str, alias: str) -> str:
        """Return the version number that `alias` points at."""
        ...

    def load(self, name: str, version: str) -> LoadedModel:
        """Load a version with its input signature."""
        ...


REGISTRY_CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


class MlflowRegistry:
    """Reads aliases and loads versions from an MLflow model registry."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        # MLflow's client retries 7 times with exponential backoff and waits up to 120 s per
        # call: a registry outage would hang each alias check for minutes and /models would not
        # say it. Serving fails fast instead (the checks back off on their own); an operator's
        # explicit setting wins.
        for variable, value in REGISTRY_CLIENT_ENV.items():
            os.environ.setdefault(variable, value)

    def version_of(self, name: str, alias: str) -> str:
        """Return the version number that `alias` points at."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.tracking_uri, self.tracking_uri)
        return str(client.get_model_version_by_alias(name, alias).version)

    def load(self, name: str, version: str) -> LoadedModel:
        """Load a version with its input signature."""
        import mlflow

        # pyfunc resolves models:/ URIs through the process-wide registry URI.
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        schema = InputSchema.from_mlflow(pyfunc.metadata.get_input_schema())
        # Requests are checked and typed against the signature before they get here, so a
        # scikit-learn model is called directly: pyfunc would re-check every batch (~1-2 ms).
        predictor = pyfunc.get_raw_model() if "sklearn" in pyfunc.metadata.flavors else pyfunc
        return LoadedModel(name, version, schema, predictor)
