"""Building the medallion layers on real Delta tables: content, idempotence, resumption."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pytest

from kernel.errors import ConfigError
from lakehouse.seed import BRONZE, GOLD, REJECTED, SILVER, seed_trips
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakehouse.trips import clean
from lakehouse.trips.features import FEATURES, GOLD_SCHEMA

pytestmark = pytest.mark.integration
SCALE, BATCH = 12_000, 5_000


def lake_at(path: Path) -> Lakehouse:
    return Lakehouse(LakehouseSettings(home=path))


def versions(lake: Lakehouse) -> dict[str, int]:
    return {str(ref): lake.open(ref).version() for ref in (BRONZE, SILVER, REJECTED, GOLD)}


def fingerprint(lake: Lakehouse) -> dict[str, object]:
    """Content of every layer, independent of file layout and version numbers."""
    out: dict[str, object] = {}
    for ref in (BRONZE, SILVER, REJECTED, GOLD):
        table = lake.read(ref)
        keys = [name for name in ("trip_id", "rejected_by") if name in table.column_names]
        out[str(ref)] = table.sort_by([(key, "ascending") for key in keys]).to_pydict()
    return out


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Lakehouse:
    lake = lake_at(tmp_path_factory.mktemp("seeded"))
    seed_trips(lake, SCALE, seed=11, rows_per_batch=BATCH)
    return lake


def test_layers_account_for_every_bronze_row(seeded: Lakehouse) -> None:
    rows = {str(ref): seeded.describe(ref)["rows"] for ref in (BRONZE, SILVER, REJECTED, GOLD)}
    assert rows["bronze.trips"] == SCALE
    assert rows["silver.trips"] + rows["silver.trips_rejected"] == SCALE
    assert rows["gold.trips"] == rows["silver.trips"]
    assert 0.9 * SCALE < rows["silver.trips"] < SCALE


def test_bronze_is_partitioned_by_daily_file(seeded: Lakehouse) -> None:
    info = seeded.describe(BRONZE)
    assert info["partition_by"] == ["ingest_date"]
    assert len(seeded.open(BRONZE).partitions()) == 3


def test_silver_rows_satisfy_every_rule(seeded: Lakehouse) -> None:
    silver = seeded.read(SILVER)
    assert len(pc.unique(silver.column("trip_id"))) == silver.num_rows
    fare = silver.column("fare_amount")
    assert pc.min(fare).as_py() >= clean.MIN_FARE and pc.max(fare).as_py() <= clean.MAX_FARE
    distance = silver.column("trip_distance")
    assert pc.min(distance).as_py() > 0 and pc.max(distance).as_py() <= 100
    assert set(silver.column("payment_type").to_pylist()) <= clean.PAYMENT_TYPES | {"unknown"}
    assert silver.column("pickup_ts").null_count == 0
    duration = pc.subtract(silver.column("dropoff_ts"), silver.column("pickup_ts"))
    assert pc.min(pc.cast(duration, "int64")).as_py() >= 60_000_000  # microseconds


def test_rejected_rows_name_their_rule_and_match_the_counts(seeded: Lakehouse) -> None:
    rejected = seeded.read(REJECTED)
    by_rule = pc.value_counts(rejected.column("rejected_by")).to_pylist()
    counted = {item["values"]: item["counts"] for item in by_rule}
    recorded = {
        key.removeprefix("rejected."): int(value)
        for key, value in seeded.commit_metadata(REJECTED).items()
        if key.startswith("rejected.")
    }
    assert counted == {rule: n for rule, n in recorded.items() if n}
    assert {rule.name for rule in clean.RULES} == set(recorded)


def test_gold_has_model_ready_features(seeded: Lakehouse) -> None:
    gold = seeded.read(GOLD)
    assert gold.schema == GOLD_SCHEMA
    for name in FEATURES:
        assert gold.column(name).null_count == 0, name
    hours = gold.column("pickup_hour")
    assert pc.min(hours).as_py() >= 0 and pc.max(hours).as_py() <= 23
    assert set(gold.column("rate_code").to_pylist()) >= {"Standard", "JFK"}


def test_each_layer_records_what_it_was_built_from(seeded: Lakehouse) -> None:
    assert seeded.commit_metadata(BRONZE)["seed"] == "11"
    assert seeded.commit_metadata(SILVER)["source"] == "bronze.trips@0"
    assert seeded.commit_metadata(GOLD)["source"] == "silver.trips@0"


def test_rerun_with_same_parameters_writes_nothing(tmp_path: Path) -> None:
    lake = lake_at(tmp_path)
    seed_trips(lake, SCALE, seed=3, rows_per_batch=BATCH)
    before = versions(lake)
    results = seed_trips(lake, SCALE, seed=3, rows_per_batch=BATCH)
    assert all(result.skipped for result in results)
    assert versions(lake) == before


def test_rerun_with_new_seed_adds_versions_and_keeps_old_ones(tmp_path: Path) -> None:
    lake = lake_at(tmp_path)
    seed_trips(lake, SCALE, seed=3, rows_per_batch=BATCH)
    old_gold = lake.read(GOLD)
    seed_trips(lake, SCALE, seed=4, rows_per_batch=BATCH)
    assert versions(lake) == dict.fromkeys(versions(lake), 1)
    assert lake.read(GOLD, version=0).equals(old_gold)
    assert not lake.read(GOLD).equals(old_gold)


def test_interrupted_run_resumes_to_the_same_tables(tmp_path: Path) -> None:
    interrupted = lake_at(tmp_path / "interrupted")

    def crash_in_silver(layer: str, rows: int, total: int) -> None:
        if layer == "silver":
            raise RuntimeError("simulated crash")

    with pytest.raises(Exception, match="simulated crash"):
        seed_trips(interrupted, SCALE, seed=5, rows_per_batch=BATCH, progress=crash_in_silver)
    assert interrupted.exists(BRONZE)
    assert not interrupted.exists(SILVER)

    results = seed_trips(interrupted, SCALE, seed=5, rows_per_batch=BATCH)
    assert [r.skipped for r in results] == [True, False, False, False]

    clean_run = lake_at(tmp_path / "clean")
    seed_trips(clean_run, SCALE, seed=5, rows_per_batch=BATCH)
    assert fingerprint(interrupted) == fingerprint(clean_run)


@pytest.mark.parametrize("scale", [10, 60_000_000])
def test_scale_outside_the_supported_range_is_a_config_error(tmp_path: Path, scale: int) -> None:
    with pytest.raises(ConfigError, match="--scale must be between"):
        seed_trips(lake_at(tmp_path), scale, seed=1)
