"""Serving loads only what training made: gated versions whose artifact files are unchanged.

Against the real `mlflow server` (proxied artifacts): a version trained by `lakeserve train`
loads; one registered by hand from the same files is refused (no gate mark); a model file
replaced in the artifact store is refused before it is unpickled. The unverified path shows
what the check prevents: the replaced pickle runs code on load.
"""

from __future__ import annotations

import contextlib
import pickle
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from kernel.integrity import DIGEST_PARAM
from serving.model import MlflowRegistry, ModelRefused
from tests.utils.platform import prepare

pytestmark = pytest.mark.integration
MODEL = "fare-integrity"


class _TouchOnLoad:
    """A pickle payload: unpickling it creates `marker` (stands in for any code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return (Path.touch, (self.marker,))


def test_only_gated_versions_with_untouched_artifacts_are_loaded(
    tmp_path: Path, mlflow_server: str
) -> None:
    prepare(tmp_path, mlflow_server, MODEL)
    client = MlflowClient(mlflow_server, mlflow_server)
    trained = client.get_model_version(MODEL, "1")
    assert trained.run_id is not None
    recorded = client.get_run(trained.run_id).data.params[DIGEST_PARAM]
    assert recorded.startswith("sha256:") and trained.tags[DIGEST_PARAM] == recorded

    registry = MlflowRegistry(mlflow_server)
    row = pd.DataFrame(
        [{"trip_distance": 3.2, "passenger_count": 1, "pickup_hour": 8, "pickup_dow": 2,
          "is_weekend": False, "pickup_borough": "Manhattan", "dropoff_borough": "Brooklyn",
          "is_airport": False, "rate_code": "Standard"}]
    )  # fmt: skip
    loaded = registry.load(MODEL, "1")
    assert loaded.version == "1" and float(loaded.predict(row)[0]) > 0

    # Registered by hand from the very same files: the gate never marked it.
    by_hand = client.create_model_version(MODEL, f"models:/{MODEL}/1")
    with pytest.raises(ModelRefused, match=r"promotion\.decision"):
        registry.load(MODEL, by_hand.version)
    assert MlflowRegistry(mlflow_server, verify=False).load(MODEL, by_hand.version).version

    # The model file replaced in the artifact store (anyone who can write the bucket could).
    marker = tmp_path / "code-ran"
    payload = tmp_path / "payload" / "model.pkl"
    payload.parent.mkdir()
    payload.write_bytes(pickle.dumps(_TouchOnLoad(marker)))
    mlflow.set_tracking_uri(mlflow_server)
    store = get_artifact_repository(client.get_model_version_download_uri(MODEL, "1"))
    assert "model.pkl" in [entry.path for entry in store.list_artifacts()]
    store.log_artifact(str(payload))

    with pytest.raises(ModelRefused, match="artifact files hash to sha256:"):
        registry.load(MODEL, "1")
    assert not marker.exists()  # refused before anything was unpickled
    with contextlib.suppress(Exception):
        MlflowRegistry(mlflow_server, verify=False).load(MODEL, "1")
    assert marker.exists()  # what the check prevents
