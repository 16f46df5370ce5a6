"""A fake registry for fast unit tests of the serving API (the real one is tested end to end)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from serving.model import LoadedModel
from serving.schema import Column, InputSchema

SCHEMA = InputSchema(
    (
        Column("trip_distance", "double"),
        Column("passenger_count", "integer"),
        Column("is_airport", "boolean"),
        Column("rate_code", "string"),
    )
)
ROW = {"trip_distance": 3.0, "passenger_count": 2, "is_airport": False, "rate_code": "Standard"}


class Doubler:
    """Predicts 2 x distance + passengers, so tests can compute expected values."""

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return (2 * frame["trip_distance"] + frame["passenger_count"]).to_numpy()


class FakeRegistry:
    """Aliases in a dict; `fail` makes every lookup fail like an unreachable server."""

    def __init__(self, aliases: dict[tuple[str, str], str]) -> None:
        self.aliases = aliases
        self.fail = False
        self.loads: list[tuple[str, str]] = []

    def version_of(self, name: str, alias: str) -> str:
        if self.fail:
            raise ConnectionError("registry unreachable")
        return self.aliases[(name, alias)]

    def load(self, name: str, version: str) -> LoadedModel:
        self.loads.append((name, version))
        return LoadedModel(name, version, SCHEMA, Doubler())
