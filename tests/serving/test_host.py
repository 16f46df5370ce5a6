"""Batched prediction: a request the model cannot predict fails alone, never its batch."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pandas as pd
import pytest

from kernel.errors import InvalidInput
from serving.host import ModelSlot
from serving.metrics import ServingMetrics
from serving.model import LoadedModel
from serving.options import ServingOptions
from tests.utils.fakes import ROW, SCHEMA, fake_host


class PickyModel:
    """Raises on any negative distance, as a ridge model raises on a non-finite value."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        self.calls.append(len(frame))
        if (frame["trip_distance"] < 0).any():
            raise ValueError("Input contains a negative distance")
        return frame["trip_distance"].to_numpy() * 2


def slot() -> ModelSlot:
    options = ServingOptions.model_validate({"models": [{"name": "fare"}]})
    return ModelSlot(options.models[0], options, ServingMetrics(), batching=False)


def rows(distance: float) -> dict[str, np.ndarray]:
    return SCHEMA.check({k: [v] for k, v in {**ROW, "trip_distance": distance}.items()}, 5)


def test_a_poisoned_request_fails_alone_and_the_rest_of_its_batch_is_answered() -> None:
    model = LoadedModel("fare", "7", SCHEMA, PickyModel())
    outcomes = slot().predict_batch([(model, rows(1.0)), (model, rows(-1.0)), (model, rows(3.0))])
    first, poisoned, third = outcomes
    assert isinstance(first, tuple) and isinstance(third, tuple)
    assert (first[0].tolist(), first[1]) == ([2.0], "7")
    assert third[0].tolist() == [6.0]
    assert isinstance(poisoned, InvalidInput)
    assert str(poisoned) == (
        "model fare version 7 cannot predict these rows: ValueError: Input contains a negative "
        "distance"
    )
    # One call for the batch, then one per request.
    assert model.predictor.calls == [3, 1, 1, 1]


def test_the_poisoned_request_gets_its_error_raised() -> None:
    model = LoadedModel("fare", "7", SCHEMA, PickyModel())
    with pytest.raises(InvalidInput, match="cannot predict these rows"):
        asyncio.run(slot().predict(model, rows(-2.0)))
    assert model.predictor.calls == [1]


def test_failed_alias_checks_back_off_and_a_success_resets_them() -> None:
    host, registry = fake_host({"models": [{"name": "fare"}], "alias_poll_interval_s": 1})
    registry.fail = True
    slot = host.slot("fare")
    delays = []
    for _ in range(8):
        asyncio.run(host.refresh(force=True))
        delays.append(round(slot.retry_at - time.monotonic()))
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    asyncio.run(host.refresh())  # backing off: the registry is not even asked
    assert slot.failures == 8
    registry.fail = False
    asyncio.run(host.refresh(force=True))
    assert slot.ready and slot.failures == 0 and slot.retry_at == 0.0
    # Loaded, then the registry fails and comes back with the alias unchanged: the error clears.
    registry.fail = True
    asyncio.run(host.refresh(force=True))
    assert slot.last_error == "ConnectionError: registry unreachable" and slot.failures == 1
    registry.fail = False
    asyncio.run(host.refresh(force=True))
    assert slot.last_error is None and slot.failures == 0 and slot.retry_at == 0.0
