"""The lakehouse on an S3-compatible object store (moto_server standing in for MinIO)."""

from __future__ import annotations

import uuid

import boto3
import pytest

from lakehouse.seed import BRONZE, GOLD, seed_trips
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse

pytestmark = pytest.mark.integration


@pytest.fixture
def s3_lake(s3_server: str) -> Lakehouse:
    bucket = f"lake-{uuid.uuid4().hex[:8]}"
    boto3.client(
        "s3",
        endpoint_url=s3_server,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    ).create_bucket(Bucket=bucket)
    settings = LakehouseSettings(
        lake_root=f"s3://{bucket}/lakehouse/",
        s3_endpoint_url=s3_server,
        s3_access_key_id="test",
        s3_secret_access_key="test",
        s3_allow_http=True,
    )
    return Lakehouse(settings)


def test_seed_show_and_time_travel_work_on_s3(s3_lake: Lakehouse) -> None:
    assert s3_lake.root.startswith("s3://") and not s3_lake.root.endswith("/")
    seed_trips(s3_lake, 3_000, seed=1, rows_per_batch=2_000)
    assert [str(ref) for ref in s3_lake.tables()] == [
        "bronze.trips",
        "silver.trips",
        "silver.trips_rejected",
        "gold.trips",
    ]
    assert s3_lake.describe(BRONZE)["rows"] == 3_000
    first = s3_lake.read(GOLD)

    rerun = seed_trips(s3_lake, 3_000, seed=1, rows_per_batch=2_000)
    assert all(result.skipped for result in rerun)

    seed_trips(s3_lake, 3_000, seed=2, rows_per_batch=2_000)
    assert s3_lake.open(GOLD).version() == 1
    assert s3_lake.read(GOLD, version=0).equals(first)


def test_s3_credentials_reach_deltalake_but_not_the_repr(s3_lake: Lakehouse) -> None:
    options = s3_lake.settings.storage_options()
    assert options["AWS_ACCESS_KEY_ID"] == "test"
    assert options["AWS_ALLOW_HTTP"] == "true"
    assert "test" not in repr(s3_lake.settings.s3_secret_access_key)


def test_sql_reads_the_tables_on_s3_at_a_pinned_version(s3_lake: Lakehouse) -> None:
    from lakehouse.sql import query
    from lakehouse.tables import TableRef

    seed_trips(s3_lake, 3_000, seed=1, rows_per_batch=2_000)
    first = s3_lake.read(GOLD).num_rows
    seed_trips(s3_lake, 4_000, seed=2, rows_per_batch=2_000)
    count = "SELECT count(*) AS n FROM gold.trips"
    assert query(s3_lake, count).to_pylist() == [{"n": s3_lake.read(GOLD).num_rows}]
    assert query(s3_lake, count, {TableRef("gold", "trips"): 0}).to_pylist() == [{"n": first}]
