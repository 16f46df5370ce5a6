"""Hosts the configured models in one process: loading, alias following, batched prediction."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import structlog
from pydantic import BaseModel, Field
from ray import serve

from kernel.errors import InvalidInput, NotFound
from serving.metrics import ServingMetrics
from serving.model import LoadedModel, Registry
from serving.options import ModelSpec, ServingOptions

log = structlog.get_logger(__name__)
Prediction = tuple[np.ndarray, str]
Rows = dict[str, np.ndarray]  # one request's columns, checked against the signature
MAX_BACKOFF_S = 30.0  # longest wait between alias checks of a failing model
Outcome = Prediction | InvalidInput  # per request of a batch: one bad request fails alone


class HostedModel(BaseModel):
    """A hosted model: the alias it follows and the version it serves."""

    name: str
    alias: str
    version: str | None = Field(description="Version served now; null until loaded.")
    ready: bool
    last_error: str | None = Field(description="Last failure to check or load the alias.")
    replica: str = Field(
        default="",
        description="The replica that answered (each follows the alias on its own): Ray "
        "Serve's replica id, or host:pid outside Serve.",
    )


def replica_name() -> str:
    """This process's replica id in Ray Serve, or host:pid outside a replica."""
    try:
        return str(serve.get_replica_context().replica_id.unique_id)
    except Exception:  # RayServeException outside a replica; any other failure: same answer
        return f"{socket.gethostname()}:{os.getpid()}"


class ModelSlot:
    """One hosted model: the version serving now, and the batch queue in front of it."""

    def __init__(
        self, spec: ModelSpec, options: ServingOptions, metrics: ServingMetrics, batching: bool
    ) -> None:
        self.spec = spec
        self.current: LoadedModel | None = None
        self.last_error: str | None = None
        self.failures = 0  # consecutive failed checks or loads
        self.retry_at = 0.0  # monotonic time before which the alias is not checked again
        self._metrics = metrics
        # serve.batch needs a Serve replica; outside one (unit tests) requests go one by one.
        self._batch = (
            _batcher(options.max_batch_size, options.batch_wait_timeout_s)(self)
            if batching
            else None
        )

    @property
    def ready(self) -> bool:
        """Return True once a version is loaded."""
        return self.current is not None

    def describe(self, replica: str = "") -> HostedModel:
        """Say what this slot follows and serves (in `replica`)."""
        return HostedModel(
            name=self.spec.name,
            alias=self.spec.alias,
            version=self.current.version if self.current else None,
            ready=self.ready,
            last_error=self.last_error,
            replica=replica,
        )

    async def predict(self, model: LoadedModel, rows: Rows) -> Prediction:
        """Queue rows checked against `model`; return predictions made by that same version."""
        if self._batch is None:
            outcome = self.predict_batch([(model, rows)])[0]
        else:
            outcome = await self._batch.predict((model, rows))
        if isinstance(outcome, InvalidInput):
            raise outcome
        return outcome

    def predict_batch(self, batch: list[tuple[LoadedModel, Rows]]) -> list[Outcome]:
        """Predict queued requests, one model call per version among them.

        Each request carries the version it was checked against, so a version swapped in while
        it waited neither answers it nor sees rows shaped for another signature. When the model
        raises on a batch, its requests are retried one by one: only those the model cannot
        predict fail (422, with the model's message), never the other clients in the batch.
        """
        results: list[Outcome | None] = [None] * len(batch)
        groups: dict[int, list[int]] = {}
        for position, (model, _) in enumerate(batch):
            groups.setdefault(id(model), []).append(position)
        for positions in groups.values():
            model = batch[positions[0]][0]
            try:
                outcomes: list[Outcome] = list(
                    self._predict(model, [batch[p][1] for p in positions])
                )
            except Exception as exc:
                if len(positions) == 1:
                    outcomes = [self._failed(model, exc)]
                else:
                    log.warning(
                        "batch failed, retrying its requests one by one",
                        model=model.name, version=model.version, requests=len(positions),
                    )  # fmt: skip
                    outcomes = [self._alone(model, batch[p][1]) for p in positions]
            for position, outcome in zip(positions, outcomes, strict=True):
                results[position] = outcome
        return [result for result in results if result is not None]

    def _predict(self, model: LoadedModel, items: list[Rows]) -> list[Prediction]:
        frame = model.schema.frame(items)
        predictions = np.asarray(model.predict(frame))
        if len(predictions) != len(frame):
            raise ValueError(
                f"the model returned {len(predictions)} predictions for {len(frame)} rows"
            )
        self._metrics.observe_batch(model.name, model.version, len(items), len(frame))
        bounds = np.cumsum([len(next(iter(rows.values()))) for rows in items])[:-1]
        return [(part, model.version) for part in np.split(predictions, bounds)]

    def _alone(self, model: LoadedModel, rows: Rows) -> Outcome:
        try:
            return self._predict(model, [rows])[0]
        except Exception as exc:
            return self._failed(model, exc)

    @staticmethod
    def _failed(model: LoadedModel, exc: Exception) -> InvalidInput:
        """The answer to a request the model raised on: its rows passed the signature check."""
        message = f"{type(exc).__name__}: {exc}"[:300]
        log.warning(
            "model cannot predict a request", model=model.name, version=model.version, error=message
        )
        return InvalidInput(
            f"model {model.name} version {model.version} cannot predict these rows: {message}"
        )


def _batcher(max_batch_size: int, wait_s: float) -> Callable[[ModelSlot], Any]:
    """Build a batch queue class with the configured size and wait (fixed at decoration)."""

    class Batcher:
        def __init__(self, slot: ModelSlot) -> None:
            self.slot = slot

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=wait_s)
        async def predict(self, batch: list[tuple[LoadedModel, Rows]]) -> list[Outcome]:
            return self.slot.predict_batch(batch)

    return Batcher


class ModelHost:
    """The set of hosted models, each following its alias in the background."""

    def __init__(
        self,
        options: ServingOptions,
        registry: Registry,
        metrics: ServingMetrics,
        batching: bool = True,
    ) -> None:
        self.options = options
        self.registry = registry
        self.metrics = metrics
        self.slots = {
            spec.name: ModelSlot(spec, options, metrics, batching) for spec in options.models
        }
        self.replica = replica_name()
        for name in self.slots:
            metrics.model_waiting(name)
        self._poller: asyncio.Task[None] | None = None
        self._gauges: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Load every model once (failures leave it not ready), then follow aliases."""
        await self.refresh(force=True)
        self._poller = asyncio.create_task(self._follow_aliases(), name="alias-follower")
        self._gauges = asyncio.create_task(self.metrics.keep_gauges_exported(), name="gauges")

    async def stop(self) -> None:
        """Stop following aliases."""
        for task in (self._poller, self._gauges):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    def slot(self, name: str) -> ModelSlot:
        """Return the slot of a hosted model or raise NotFound."""
        try:
            return self.slots[name]
        except KeyError:
            hosted = ", ".join(sorted(self.slots))
            raise NotFound(f"model {name} is not hosted here; hosted: {hosted}") from KeyError(name)

    @property
    def ready(self) -> bool:
        """Return True when every hosted model has a loaded version."""
        return all(slot.ready for slot in self.slots.values())

    async def refresh(self, force: bool = False) -> None:
        """Check every alias (those not backing off, unless `force`); load versions that moved."""
        now = time.monotonic()
        for slot in self.slots.values():
            if force or now >= slot.retry_at:
                await self._refresh(slot)

    async def _refresh(self, slot: ModelSlot) -> None:
        name, alias = slot.spec.name, slot.spec.alias
        try:
            version = await asyncio.to_thread(self.registry.version_of, name, alias)
            if slot.current is not None and slot.current.version == version:
                slot.last_error, slot.failures, slot.retry_at = None, 0, 0.0  # registry is back
                return
            started = time.perf_counter()
            loaded = await asyncio.to_thread(self.registry.load, name, version)
        except Exception as exc:  # registry down or alias missing: keep serving what we have
            slot.last_error = f"{type(exc).__name__}: {exc}"
            slot.failures += 1
            # Back off: the poll interval, doubled per consecutive failure, up to MAX_BACKOFF_S.
            delay = min(
                self.options.alias_poll_interval_s * 2 ** (slot.failures - 1), MAX_BACKOFF_S
            )
            slot.retry_at = time.monotonic() + delay
            log.warning(
                "alias check failed", model=name, alias=alias, error=slot.last_error,
                failures=slot.failures, retry_in_s=round(delay, 1),
            )  # fmt: skip
            return
        previous = slot.current.version if slot.current else None
        # One reference swap: requests already batched keep the object they captured.
        slot.current = loaded
        slot.last_error = None
        slot.failures, slot.retry_at = 0, 0.0
        self.metrics.model_loaded(name, version)
        log.info(
            "model version loaded",
            model=name,
            alias=alias,
            version=version,
            previous=previous,
            seconds=round(time.perf_counter() - started, 3),
        )

    async def _follow_aliases(self) -> None:
        while True:
            await asyncio.sleep(self.options.alias_poll_interval_s)
            await self.refresh()
