"""What serving saw: the request-log tables in bronze and their deduplicated silver copies.

Replicas append to bronze through `lakehouse.sink.DeltaSink` (at least once: a retried append
may land twice), one row per predicted row in `bronze.predictions` (keyed by request id and row
number) and one row per RAG answer in `bronze.rag_requests` (keyed by request id). Silver keeps
the first row of each key: `refresh_silver` rebuilds it when bronze moved on.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from lakehouse.tables import Lakehouse, TableRef

PREDICTIONS = TableRef("bronze", "predictions")
RAG_REQUESTS = TableRef("bronze", "rag_requests")
PARTITION_BY = ["date"]

_TIMESTAMP = pa.timestamp("us", tz="UTC")
# The columns every prediction row has; the model's inputs go into the `features` struct,
# typed as the model's signature says (several models share the table: the struct is the
# union of their inputs, merged into the schema when a new one appears).
PREDICTION_FIELDS = [
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("row", pa.int32(), nullable=False),
    pa.field("received_at", _TIMESTAMP, nullable=False),
    pa.field("date", pa.date32(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("version", pa.string()),
    pa.field("endpoint", pa.string(), nullable=False),
    pa.field("status", pa.int32(), nullable=False),
    pa.field("error", pa.string()),
    pa.field("latency_ms", pa.float64(), nullable=False),
    pa.field("prediction", pa.float64()),
    pa.field("prediction_json", pa.string()),  # a prediction that is not one number
    # The row's features outside the version's training domain (null: no domain recorded).
    pa.field("out_of_domain", pa.list_(pa.string())),
]
RAG_SCHEMA = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("received_at", _TIMESTAMP, nullable=False),
        pa.field("date", pa.date32(), nullable=False),
        pa.field("endpoint", pa.string(), nullable=False),
        pa.field("status", pa.int32(), nullable=False),
        pa.field("error", pa.string()),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("question", pa.string()),
        pa.field("query", pa.string()),  # the standalone question retrieval used
        pa.field("retrieved_ids", pa.list_(pa.string())),
        pa.field("retrieved_scores", pa.list_(pa.float64())),
        pa.field("cited_ids", pa.list_(pa.string())),
        pa.field("found", pa.bool_()),
        pa.field("mode", pa.string()),
        pa.field("timings_ms", pa.map_(pa.string(), pa.float64())),
        pa.field("answer_chars", pa.int32()),
    ]
)


def prediction_schema(features: pa.StructType) -> pa.Schema:
    """The bronze.predictions schema for one model's input columns."""
    return pa.schema([*PREDICTION_FIELDS, pa.field("features", features)])


@dataclass(frozen=True)
class Dedup:
    """A bronze request-log table, its silver copy and the columns that identify an event."""

    bronze: TableRef
    keys: tuple[str, ...]

    @property
    def silver(self) -> TableRef:
        return TableRef("silver", self.bronze.name)


LOGS = (Dedup(PREDICTIONS, ("request_id", "row")), Dedup(RAG_REQUESTS, ("request_id",)))


@dataclass(frozen=True)
class Refreshed:
    """What one silver rebuild did."""

    table: str
    bronze_version: int
    bronze_rows: int
    rows: int
    skipped: bool


def refresh_silver(lake: Lakehouse, log: Dedup) -> Refreshed | None:
    """Rebuild `log.silver` from the latest bronze version, one row per key (the earliest).

    Returns None when bronze does not exist yet; skips the rebuild when silver was built from
    this bronze version already, so a retried run does nothing twice.
    """
    if not lake.exists(log.bronze):
        return None
    version = lake.open(log.bronze).version()
    origin = {"source": str(log.bronze), "source_version": str(version)}
    if lake.built_from(log.silver, origin):
        rows = lake.dataset(log.silver).count_rows()
        return Refreshed(str(log.silver), version, -1, rows, skipped=True)
    bronze = lake.read(log.bronze, version)
    unique = _first_per_key(bronze, log.keys)
    lake.overwrite(
        log.silver,
        unique.to_batches(max_chunksize=50_000),
        unique.schema,
        metadata=origin,
        partition_by=PARTITION_BY,
        description=f"{log.bronze} deduplicated by {', '.join(log.keys)}",
    )
    return Refreshed(str(log.silver), version, bronze.num_rows, unique.num_rows, skipped=False)


LIVE_ERROR = TableRef("gold", "live_error")
_LIVE_ERROR_SQL = """
WITH actual AS (
    SELECT request_id, arg_min(fare_amount, observed_at) AS actual FROM outcomes GROUP BY 1
)
SELECT p.model, p.version, p.date, count(*) AS predictions,
       avg(abs(p.prediction - a.actual)) AS mae,
       sqrt(avg((p.prediction - a.actual) ^ 2)) AS rmse,
       avg(p.prediction - a.actual) AS bias,
       avg(p.prediction) AS mean_prediction, avg(a.actual) AS mean_actual
FROM predictions AS p JOIN actual AS a USING (request_id)
WHERE p.status = 200 AND p.prediction IS NOT NULL AND p.row = 0
GROUP BY ALL ORDER BY ALL
"""


def refresh_live_error(lake: Lakehouse) -> Refreshed | None:
    """Rebuild gold.live_error: per model, version and day, the error of the predictions whose
    trips' actual fares arrived (silver.predictions joined with bronze.trip_outcomes by
    request id; single-trip requests, as the live feed sends).

    Returns None until both tables exist; skips when neither moved since the last build.
    """
    import duckdb

    from lakehouse.trips.feed import OUTCOMES

    silver = LOGS[0].silver
    if not (lake.exists(silver) and lake.exists(OUTCOMES)):
        return None
    versions = {silver: lake.open(silver).version(), OUTCOMES: lake.open(OUTCOMES).version()}
    origin = {"source": ",".join(f"{ref}@{v}" for ref, v in versions.items())}
    if lake.built_from(LIVE_ERROR, origin):
        rows = lake.dataset(LIVE_ERROR).count_rows()
        return Refreshed(str(LIVE_ERROR), versions[silver], -1, rows, skipped=True)
    columns = ["request_id", "row", "model", "version", "date", "status", "prediction"]
    connection = duckdb.connect()
    try:
        connection.register("predictions", lake.read(silver, versions[silver], columns))
        connection.register("outcomes", lake.read(OUTCOMES, versions[OUTCOMES]))
        table = _as_table(connection.sql(_LIVE_ERROR_SQL).arrow())
    finally:
        connection.close()
    lake.overwrite(
        LIVE_ERROR,
        table.to_batches(),
        table.schema,
        metadata=origin,
        description="Live error per model version and day: predictions joined with outcomes.",
    )
    return Refreshed(str(LIVE_ERROR), versions[silver], -1, table.num_rows, skipped=False)


def _as_table(result: pa.Table | pa.RecordBatchReader) -> pa.Table:
    return result.read_all() if isinstance(result, pa.RecordBatchReader) else result


def _first_per_key(table: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """Keep the earliest-received row of every key (a duplicate is one append landed twice)."""
    ordered = table.sort_by([*((k, "ascending") for k in keys), ("received_at", "ascending")])
    index = pa.array(range(ordered.num_rows), pa.int64())
    firsts = (
        ordered.select(list(keys))
        .append_column("_i", index)
        .group_by(list(keys), use_threads=False)
        .aggregate([("_i", "min")])
        .column("_i_min")
    )
    return ordered.take(firsts).sort_by([("received_at", "ascending")])
