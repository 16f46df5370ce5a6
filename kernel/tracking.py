"""The MLflow connection: a tracking store and model registry, checked for reachability up front."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import httpx
import mlflow
from mlflow.exceptions import MlflowException, RestException
from mlflow.tracking import MlflowClient
from requests.exceptions import ConnectionError as RequestsConnectionError

from kernel.errors import TrackingUnavailable
from kernel.settings import TrackingSettings


class TrackingStore:
    """Where runs and registered models go; `connect()` before anything else."""

    def __init__(self, settings: TrackingSettings) -> None:
        self.settings = settings
        self.uri = settings.uri
        self._client: MlflowClient | None = None

    @property
    def client(self) -> MlflowClient:
        """Return the client; connect() must have been called."""
        if self._client is None:
            raise RuntimeError(f"{type(self).__name__}.connect() was not called")
        return self._client

    def connect(self) -> None:
        """Check the server answers /health, then point MLflow at it.

        Raises:
            TrackingUnavailable: the tracking server does not answer, or not with 200.
        """
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
        # The cloudpickle choice is deliberate (training/tracking.py); do not warn on every run.
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
