"""Build bronze -> silver -> gold trip tables; each layer is rebuilt only when its input changed.

Every layer is written in one atomic overwrite commit whose metadata records what it was built
from (generator parameters for bronze, the source table version for silver and gold). A re-run
compares that metadata and skips up-to-date layers, so re-running is idempotent and a run
interrupted at any point resumes from the first layer that did not commit.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import structlog

from kernel.errors import ConfigError
from lakehouse.tables import Lakehouse, TableRef
from lakehouse.trips import clean, features, generate

BRONZE = TableRef("bronze", "trips")
SILVER = TableRef("silver", "trips")
REJECTED = TableRef("silver", "trips_rejected")
GOLD = TableRef("gold", "trips")
GENERATOR_VERSION = "1"
MIN_SCALE, MAX_SCALE = 1_000, 50_000_000
# Two weeks: each weekday twice. A model trained on one day knows one weekday, and every
# request of another day is outside its domain.
SEED_DAYS = 14
MAX_DAILY_ROWS = 250_000

log = structlog.get_logger(__name__)
Progress = Callable[[str, int, int], None]  # (layer, rows done now, rows expected)


@dataclass
class LayerResult:
    """What happened to one table during a seed run."""

    table: str
    version: int
    rows: int
    skipped: bool
    rejected: dict[str, int] = field(default_factory=dict)


def _noop(layer: str, rows: int, total: int) -> None:
    pass


def daily_rows(scale: int) -> int:
    """Rows per daily batch so that `scale` rows span SEED_DAYS days (more when very large)."""
    return min(MAX_DAILY_ROWS, math.ceil(scale / SEED_DAYS))


def seed_trips(
    lake: Lakehouse,
    scale: int,
    seed: int,
    rows_per_batch: int | None = None,
    progress: Progress = _noop,
    force: bool = False,
) -> list[LayerResult]:
    """Build the three trip layers; return one result per table written or skipped.

    A batch is one day of trips; by default the feed spans `SEED_DAYS` days (at most
    `MAX_DAILY_ROWS` a day, so memory stays bounded), so every weekday is in the training data.
    """
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ConfigError(f"--scale must be between {MIN_SCALE:,} and {MAX_SCALE:,}, got {scale:,}")
    if rows_per_batch is None:
        rows_per_batch = daily_rows(scale)
    if rows_per_batch < 1:
        raise ConfigError(f"rows per batch must be positive, got {rows_per_batch}")
    params = {
        "seed": str(seed),
        "scale": str(scale),
        "rows_per_batch": str(rows_per_batch),
        "generator": GENERATOR_VERSION,
    }
    results = [_bronze(lake, params, progress, force)]
    bronze_source = f"{BRONZE}@{results[0].version}"
    results.extend(_silver(lake, bronze_source, results[0].rows, progress, force))
    silver_source = f"{SILVER}@{results[1].version}"
    results.append(_gold(lake, silver_source, results[1].rows, progress, force))
    return results


def skipped(lake: Lakehouse, ref: TableRef) -> LayerResult:
    """Return the result of a layer that was already up to date."""
    info = lake.describe(ref)
    log.info("layer up to date", table=str(ref), version=info["version"])
    return LayerResult(str(ref), info["version"], info["rows"], skipped=True)


def _bronze(
    lake: Lakehouse, params: dict[str, str], progress: Progress, force: bool
) -> LayerResult:
    if not force and lake.built_from(BRONZE, params):
        return skipped(lake, BRONZE)
    scale, seed = int(params["scale"]), int(params["seed"])

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in generate.generate_batches(scale, seed, int(params["rows_per_batch"])):
            yield batch
            progress("bronze", batch.num_rows, scale)

    version = lake.overwrite(
        BRONZE,
        batches(),
        generate.BRONZE_SCHEMA,
        metadata=params,
        partition_by=["ingest_date"],
        description="Raw taxi trip feed, one partition per daily file, as received.",
    )
    log.info("bronze written", table=str(BRONZE), version=version, rows=scale)
    return LayerResult(str(BRONZE), version, scale, skipped=False)


def _bronze_days(lake: Lakehouse, version: int) -> Iterator[pd.DataFrame]:
    table = lake.open(BRONZE, version)
    dataset = lake.dataset(BRONZE, version)
    days = sorted({p["ingest_date"] for p in table.partitions()})
    for day in days:
        day_filter = pc.field("ingest_date") == pa.scalar(pd.Timestamp(day).date(), pa.date32())
        yield dataset.to_table(filter=day_filter).to_pandas()


def _silver(
    lake: Lakehouse, source: str, bronze_rows: int, progress: Progress, force: bool
) -> list[LayerResult]:
    expected = {"source": source, "rules": clean.RULES_VERSION}
    if not force and lake.built_from(SILVER, expected) and lake.built_from(REJECTED, expected):
        return [skipped(lake, SILVER), skipped(lake, REJECTED)]
    bronze_version = int(source.rpartition("@")[2])
    counts: Counter[str] = Counter()
    quarantined: list[pd.DataFrame] = []
    kept_rows = 0

    def batches() -> Iterator[pa.RecordBatch]:
        nonlocal kept_rows
        for day in _bronze_days(lake, bronze_version):
            kept, rejected, day_counts = clean.apply_rules(day)
            counts.update(day_counts)
            quarantined.append(rejected)
            kept_rows += len(kept)
            progress("silver", len(day), bronze_rows)
            if len(kept):
                yield clean.to_silver(kept)

    version = lake.overwrite(
        SILVER,
        batches(),
        clean.SILVER_SCHEMA,
        metadata=expected,
        description="Typed, deduplicated trips that passed every cleaning rule.",
    )
    metadata = {**expected, **{f"rejected.{k}": str(v) for k, v in sorted(counts.items())}}
    rejected_frame = pd.concat(quarantined, ignore_index=True)
    rejected_schema = generate.BRONZE_SCHEMA.append(pa.field("rejected_by", pa.string()))
    rejected_version = lake.overwrite(
        REJECTED,
        pa.Table.from_pandas(
            rejected_frame, schema=rejected_schema, preserve_index=False
        ).to_batches(),
        rejected_schema,
        metadata=metadata,
        description="Bronze rows rejected by the silver rules, with the rule that rejected them.",
    )
    log.info("silver written", table=str(SILVER), version=version, rows=kept_rows, **counts)
    return [
        LayerResult(str(SILVER), version, kept_rows, skipped=False, rejected=dict(counts)),
        LayerResult(str(REJECTED), rejected_version, len(rejected_frame), skipped=False),
    ]


def _gold(
    lake: Lakehouse, source: str, silver_rows: int, progress: Progress, force: bool
) -> LayerResult:
    expected = {"source": source, "features": features.FEATURES_VERSION}
    if not force and lake.built_from(GOLD, expected):
        return skipped(lake, GOLD)
    silver_version = int(source.rpartition("@")[2])

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in lake.scan(SILVER, silver_version):
            progress("gold", batch.num_rows, silver_rows)
            yield features.to_gold(batch)

    version = lake.overwrite(
        GOLD,
        batches(),
        features.GOLD_SCHEMA,
        metadata=expected,
        description="Model-ready trip features and the fare to predict.",
    )
    log.info("gold written", table=str(GOLD), version=version, rows=silver_rows)
    return LayerResult(str(GOLD), version, silver_rows, skipped=False)
