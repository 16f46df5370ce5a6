"""The raw feed generator: deterministic, sized as asked, dirty as configured."""

from __future__ import annotations

import pyarrow.compute as pc

from lakehouse.trips import generate


def test_same_seed_and_batch_give_identical_rows() -> None:
    dirt = generate.DirtRates()
    assert generate.generate_batch(3, 2_000, 7, dirt).equals(
        generate.generate_batch(3, 2_000, 7, dirt)
    )


def test_different_seeds_give_different_rows() -> None:
    dirt = generate.DirtRates()
    first = generate.generate_batch(0, 2_000, 1, dirt)
    second = generate.generate_batch(0, 2_000, 2, dirt)
    assert first.column("fare_amount") != second.column("fare_amount")


def test_batches_add_up_to_the_requested_scale() -> None:
    sizes = generate.batch_sizes(1_050, 500)
    assert sizes == [500, 500, 50]
    batches = list(generate.generate_batches(1_050, 3, 500))
    assert [b.num_rows for b in batches] == sizes
    days = [b.column("ingest_date")[0].as_py().isoformat() for b in batches]
    assert days == ["2024-01-01", "2024-01-02", "2024-01-03"]


def test_feed_carries_the_configured_dirt() -> None:
    batch = generate.generate_batch(0, 10_000, 5, generate.DirtRates())
    trip_ids = batch.column("trip_id")
    duplicates = len(trip_ids) - len(pc.unique(trip_ids))
    assert duplicates == int(10_000 * generate.DirtRates().duplicate)
    assert batch.column("fare_amount").null_count > 0
    assert pc.sum(pc.less(batch.column("trip_distance"), 0)).as_py() > 0
    malformed = pc.is_in(
        batch.column("pickup_datetime"), pc.cast(["N/A", "", "1700000000"], "string")
    )
    assert pc.sum(malformed).as_py() > 0
    payment = set(batch.column("payment_type").to_pylist())
    assert " CARD " in payment and "card" in payment


def test_clean_feed_has_no_dirt() -> None:
    batch = generate.generate_batch(0, 5_000, 5, generate.DirtRates(**_zero_rates()))
    assert len(pc.unique(batch.column("trip_id"))) == 5_000
    assert batch.column("fare_amount").null_count == 0
    assert pc.min(batch.column("trip_distance")).as_py() > 0


def _zero_rates() -> dict[str, float]:
    return {name: 0.0 for name in generate.DirtRates.__dataclass_fields__}
