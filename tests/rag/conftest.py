"""Fixtures shared by the RAG tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.tracing
import pytest

from kernel.settings import TrackingSettings


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TrackingSettings]:
    """A sqlite tracking store under tmp_path (MLflow's global URI restored after).

    MLflow's own default is ./mlflow.db: a test that restored it would leave a store in the
    clone that later tests (and re-runs) read.
    """
    previous = mlflow.get_tracking_uri()
    store = TrackingSettings(home=tmp_path / "mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    yield store
    mlflow.set_tracking_uri(previous)
    mlflow.tracing.reset()  # the trace destination connect() set
