"""A registered model version loaded for serving, and how to find the version behind an alias."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from kernel.domain import Domain, from_metadata
from kernel.errors import LakeserveError
from kernel.integrity import DIGEST_PARAM, GATE_TAG, downloaded_version
from serving.schema import InputSchema


@dataclass(frozen=True)
class LoadedModel:
    """One immutable model version; swapping versions means swapping the whole object."""

    name: str
    version: str
    schema: InputSchema
    predictor: Any  # mlflow.pyfunc.PyFuncModel, or anything with predict(frame)
    domain: Domain | None = None  # what training saw; None for models logged without it

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


class ModelRefused(LakeserveError):
    """A version serving will not load: not marked by the promotion gate, or its artifact files
    do not hash to the digest its training run recorded (kernel/integrity.py)."""


class MlflowRegistry:
    """Reads aliases and loads versions from an MLflow model registry.

    With `verify` (the default), a version is loaded only when the promotion gate marked it and
    the files downloaded hash to the digest its training run recorded; the model is then loaded
    from those same verified files, never fetched a second time.
    """

    def __init__(self, tracking_uri: str, verify: bool = True) -> None:
        self.tracking_uri = tracking_uri
        self.verify = verify
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

        # models:/ URIs resolve through the process-wide registry URI.
        mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.set_registry_uri(self.tracking_uri)
        expected = self._recorded_digest(name, version) if self.verify else None
        with downloaded_version(name, version) as (local, actual):
            if expected is not None and actual != expected:
                raise ModelRefused(
                    f"{name} v{version}: artifact files hash to {actual}, its training run "
                    f"recorded {expected}; the stored artifact was changed, not loading it"
                )
            pyfunc = mlflow.pyfunc.load_model(str(local))
        schema = InputSchema.from_mlflow(pyfunc.metadata.get_input_schema())
        # Requests are checked and typed against the signature before they get here, so a
        # scikit-learn model is called directly: pyfunc would re-check every batch (~1-2 ms).
        predictor = pyfunc.get_raw_model() if "sklearn" in pyfunc.metadata.flavors else pyfunc
        domain = from_metadata(pyfunc.metadata.metadata)
        return LoadedModel(name, version, schema, predictor, domain)

    def _recorded_digest(self, name: str, version: str) -> str:
        """Return the digest training recorded for `version`; refuse a version without one."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.tracking_uri, self.tracking_uri)
        registered = client.get_model_version(name, version)
        if GATE_TAG not in registered.tags:
            raise ModelRefused(
                f"{name} v{version} carries no {GATE_TAG} tag: the promotion gate of "
                "`lakeserve train` did not mark it (set verify_artifacts: false in the serve "
                "config to host versions registered by other tools)"
            )
        params = client.get_run(registered.run_id).data.params if registered.run_id else {}
        if DIGEST_PARAM not in params:
            raise ModelRefused(
                f"{name} v{version}: its training run recorded no {DIGEST_PARAM}; "
                "re-register it with `lakeserve train`"
            )
        return str(params[DIGEST_PARAM])
