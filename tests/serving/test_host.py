"""Batched prediction: a request the model cannot predict fails alone, never its batch."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

from kernel.errors import InvalidInput
from serving.host import ModelSlot
from serving.metrics import ServingMetrics
from serving.model import LoadedModel
from serving.options import ServingOptions
from tests.utils.fakes import ROW, SCHEMA


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
