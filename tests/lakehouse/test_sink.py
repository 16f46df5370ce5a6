"""DeltaSink on real Delta tables: batches, a table that is down, a poisoned row, the drain."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pytest

from lakehouse.settings import LakehouseSettings
from lakehouse.sink import DeltaSink
from lakehouse.tables import Lakehouse, TableRef

TABLE = TableRef("bronze", "sink_check")
SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("value", pa.int64()),
    ]
)


def row(i: int, value: object = None) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "request_id": f"r{i}",
        "date": now.date(),
        "at": now,
        "value": i if value is None else value,
    }


@pytest.fixture
def lake(tmp_path: Path) -> Lakehouse:
    return Lakehouse(LakehouseSettings(home=tmp_path / "home"))


def ids(lake: Lakehouse) -> list[str]:
    return sorted(lake.read(TABLE).column("request_id").to_pylist())


def sink(lake: Lakehouse, **options: object) -> DeltaSink:
    defaults: dict[str, object] = {"batch_rows": 50, "flush_s": 0.2, "partition_by": ["date"]}
    return DeltaSink(lake, TABLE, SCHEMA, source="test", **{**defaults, **options})  # type: ignore[arg-type]


def test_offered_rows_are_written_in_batches_partitioned_by_date(lake: Lakehouse) -> None:
    writer = sink(lake)
    assert all(writer.offer(row(i)) for i in range(120))
    stats = writer.close()
    assert ids(lake) == sorted(f"r{i}" for i in range(120))
    assert (stats.written, stats.dropped, stats.lost) == (120, 0, 0)
    assert stats.batches < 120  # rows share commits
    assert lake.open(TABLE).metadata().partition_columns == ["date"]


def test_a_partial_batch_is_written_after_flush_s_without_close(lake: Lakehouse) -> None:
    writer = sink(lake, batch_rows=1000)
    for i in range(3):
        writer.offer(row(i))
    deadline = time.monotonic() + 30
    while not lake.exists(TABLE) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ids(lake) == ["r0", "r1", "r2"]
    writer.close()


def test_a_table_that_is_down_drops_past_the_queue_and_loses_nothing_it_queued(
    lake: Lakehouse, tmp_path: Path
) -> None:
    # A file where the layer's directory must be: every append fails until it is removed.
    blocker = Path(lake.uri(TABLE)).parent
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a directory")
    writer = sink(lake, max_queue=20, batch_rows=10)
    accepted = [writer.offer(row(i)) for i in range(100)]
    assert accepted.count(False) >= 100 - 20 - 10  # queue plus one batch held by the writer
    assert writer.stats.dropped == accepted.count(False)
    deadline = time.monotonic() + 30
    while writer.stats.failed_appends == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.stats.failed_appends >= 1 and "Error" in (writer.stats.last_error or "")
    blocker.unlink()  # the table is back: the held batch and the queue go in
    stats = writer.close(timeout_s=60)
    kept = [f"r{i}" for i, ok in enumerate(accepted) if ok]
    assert ids(lake) == sorted(kept)
    assert (stats.written, stats.lost) == (len(kept), 0)


def test_close_with_the_table_still_down_counts_the_rest_as_lost(lake: Lakehouse) -> None:
    blocker = Path(lake.uri(TABLE)).parent
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("not a directory")
    writer = sink(lake, max_queue=30, batch_rows=10)
    offered = sum(writer.offer(row(i)) for i in range(25))
    stats = writer.close(timeout_s=2)
    assert stats.written == 0
    assert stats.lost == offered
    assert writer.offer(row(99)) is False  # closed: dropped, counted, never raised
    assert stats.dropped == 1


def test_a_poisoned_row_is_rejected_and_its_batch_still_written(lake: Lakehouse) -> None:
    writer = sink(lake)
    for i in range(10):
        writer.offer(row(i, value="not a number" if i == 4 else None))
    writer.offer({"request_id": None, "date": date.today(), "at": datetime.now(UTC)})
    stats = writer.close()
    assert ids(lake) == sorted(f"r{i}" for i in range(10) if i != 4)
    assert (stats.written, stats.rejected) == (9, 2)
