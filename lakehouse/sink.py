"""Rows appended to a Delta table off the caller's path: a bounded queue, batches, counted drops.

`DeltaSink.offer` never blocks and never raises: a full queue (the table slow or down longer than
the queue covers) drops the row and counts it. One writer thread appends a batch when it holds
`batch_rows` rows or its oldest row waited `flush_s`; a failed append is retried with backoff
while new rows queue up behind it. Delivery is at least once: an append whose commit landed but
whose answer was lost is written again, so readers deduplicate by the rows' id (silver does).
`close` drains what is queued within a deadline and reports what it could not write.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import structlog

from lakehouse.tables import Lakehouse, TableRef

log = structlog.get_logger(__name__)

MAX_BACKOFF_S = 30.0


@dataclass
class SinkStats:
    """What happened to the rows offered so far."""

    written: int = 0
    dropped: int = 0  # the queue was full, or the sink closed
    rejected: int = 0  # did not fit the table's schema (the rest of its batch was written)
    lost: int = 0  # not confirmed written by close's deadline (an append in flight may land)
    failed_appends: int = 0
    batches: int = 0
    last_error: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)


class DeltaSink:
    """Appends offered rows to one Delta table in batches, from a thread of its own."""

    def __init__(
        self,
        lake: Lakehouse,
        table: TableRef,
        schema: pa.Schema,
        *,
        source: str,
        max_queue: int = 10_000,
        batch_rows: int = 500,
        flush_s: float = 2.0,
        partition_by: list[str] | None = None,
        merge_schema: bool = False,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.lake, self.table, self.schema = lake, table, schema
        self.source, self.batch_rows, self.flush_s = source, batch_rows, flush_s
        self.partition_by, self.merge_schema = partition_by, merge_schema
        self._required = [f.name for f in schema if not f.nullable]
        self._held = 0  # rows taken from the queue and not yet committed (read by close)
        self.stats = SinkStats()
        self._on_drop = on_drop
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(maxsize=max_queue)
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sink-{table}", daemon=True)
        self._thread.start()

    def offer(self, row: dict[str, Any]) -> bool:
        """Queue one row; return False (and count it dropped) when the queue is full or closed."""
        if not self._closing.is_set():
            try:
                self._queue.put_nowait(row)
                return True
            except queue.Full:
                pass
        self.stats.add(dropped=1)
        if self._on_drop is not None:
            self._on_drop(1)
        return False

    def pending(self) -> int:
        """Rows queued and not yet taken by the writer."""
        return self._queue.qsize()

    def stop_taking(self) -> None:
        """Refuse (drop) new rows from now on; the writer drains what is queued."""
        self._closing.set()

    def close(self, timeout_s: float = 10.0) -> SinkStats:
        """Stop taking rows, write what is queued within `timeout_s`; return the final stats."""
        self._closing.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():  # the table is down: what is left is lost, and said so
            left = self._queue.qsize() + self._held
            self.stats.add(lost=left)
            log.warning("request log closed with rows unwritten", table=str(self.table), rows=left)
        return self.stats

    def _run(self) -> None:
        batch: list[dict[str, Any]] = []
        deadline = 0.0
        failures = 0
        while True:
            closing = self._closing.is_set()
            now = time.monotonic()
            drained = closing and self._queue.empty()
            if batch and (len(batch) >= self.batch_rows or drained or now >= deadline):
                if self._write(batch):
                    batch, failures, self._held = [], 0, 0
                    continue
                failures += 1
                if closing and failures > 3:  # the table keeps failing: the rest is lost
                    left = len(batch) + self._drain_queue()
                    self._held = 0
                    self.stats.add(lost=left)
                    log.warning("request log closed with rows unwritten",
                                table=str(self.table), rows=left)  # fmt: skip
                    return
                self._closing.wait(min(0.5 * 2 ** (failures - 1), MAX_BACKOFF_S))
                continue
            try:
                if closing:
                    row = self._queue.get_nowait()
                else:
                    wait = deadline - now if batch else 0.5
                    row = self._queue.get(timeout=min(max(wait, 0.0), 0.5))
            except queue.Empty:
                if closing and not batch:
                    return
                continue
            if not batch:
                deadline = now + self.flush_s
            batch.append(row)
            self._held = len(batch)

    def _drain_queue(self) -> int:
        count = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return count
            count += 1

    def _table(self, rows: list[dict[str, Any]]) -> pa.Table:
        table = pa.Table.from_pylist(rows, schema=self.schema)
        for name in self._required:  # pyarrow builds nulls into non-nullable fields silently
            if table.column(name).null_count:
                raise ValueError(f"{name} is required")
        return table

    def _rows(self, batch: list[dict[str, Any]]) -> pa.Table:
        """The batch as a table; rows that do not fit the schema are left out and counted."""
        try:
            return self._table(batch)
        except (pa.ArrowException, TypeError, ValueError):
            pass
        good = []
        for row in batch:
            try:
                self._table([row])
            except (pa.ArrowException, TypeError, ValueError) as exc:
                self.stats.add(rejected=1)
                log.warning("request log row rejected", table=str(self.table),
                            error=f"{type(exc).__name__}: {exc}"[:200])  # fmt: skip
                continue
            good.append(row)
        return self._table(good)

    def _write(self, batch: list[dict[str, Any]]) -> bool:
        rows = self._rows(batch)
        if rows.num_rows == 0:
            return True
        try:
            self.lake.append(
                self.table,
                rows,
                metadata={"source": self.source},
                partition_by=self.partition_by,
                merge_schema=self.merge_schema,
            )
        except Exception as exc:  # the table is down: retried with backoff, never raised
            self.stats.add(failed_appends=1)
            self.stats.last_error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("request log append failed", table=str(self.table), rows=len(batch),
                        error=self.stats.last_error)  # fmt: skip
            return False
        self.stats.add(written=rows.num_rows, batches=1)
        return True
