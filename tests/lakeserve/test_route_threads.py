"""No request to the API runs in a worker thread.

FastAPI runs a plain `def` endpoint or dependency in its thread pool (anyio's
`to_thread.run_sync`): a thread hop per call, under the GIL of a replica that is also
predicting. Three sync dependencies on the inference routes cost ~40% of the throughput at 32
clients (bench/serving.py); this keeps them out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakeserve.api.app import create_app
from rag.feedback import FeedbackStore
from tests.utils.fakes import ROW, FakeRag, fake_host

KEY = {"Authorization": "Bearer k"}


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the functions sent to anyio's worker threads while the test runs."""
    sent: list[str] = []
    original = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        target = getattr(func, "func", func)  # FastAPI sends a functools.partial
        sent.append(getattr(target, "__qualname__", repr(target)))
        return await original(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    yield sent


def test_inference_and_model_routes_run_no_code_in_worker_threads(
    tmp_path: Path, hops: list[str]
) -> None:
    host, _ = fake_host()
    store = FeedbackStore(Lakehouse(LakehouseSettings(home=tmp_path)))
    app = create_app(host, api_keys=["k"], rag=FakeRag([]), feedback=store)
    inputs = [
        {"name": k, "shape": [1], "datatype": "BYTES" if isinstance(v, str) else
         "BOOL" if isinstance(v, bool) else "FP64", "data": [v]}
        for k, v in ROW.items()
    ]  # fmt: skip
    with TestClient(app) as client:
        hops.clear()  # start-up (the first model load) may use threads; requests may not
        answers = [
            client.post("/predict/fare", json={"dataframe_records": [ROW]}, headers=KEY),
            client.post("/v2/models/fare/infer", json={"inputs": inputs}, headers=KEY),
            client.get("/models", headers=KEY),
            client.get("/v2/models/fare", headers=KEY),
            client.get("/v2/health/ready"),
            client.post("/predict/fare", json={"dataframe_records": [{"x": 1}]}, headers=KEY),
            client.post("/predict/fare", json={"dataframe_records": [ROW]}),
        ]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 200, 422, 401]
    assert hops == []


def test_a_sync_dependency_is_seen(hops: list[str]) -> None:
    def blocking() -> int:
        return 1

    app = FastAPI()

    @app.get("/x")
    async def x(value: int = Depends(blocking)) -> int:
        return value

    with TestClient(app) as client:
        assert client.get("/x").json() == 1
    assert hops == [blocking.__qualname__]
