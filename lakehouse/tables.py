"""Delta tables addressed as `<layer>.<name>` under the lakehouse root, with commit metadata."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from deltalake import CommitProperties, DeltaTable, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from kernel.errors import ConfigError, DataError
from lakehouse.settings import LakehouseSettings

LAYERS = ("bronze", "silver", "gold")
METADATA_PREFIX = "lakeserve."


@dataclass(frozen=True)
class TableRef:
    """A table in one medallion layer, e.g. `gold.trips`."""

    layer: str
    name: str

    @classmethod
    def parse(cls, text: str) -> TableRef:
        """Parse `layer.name`; raise ConfigError naming the problem otherwise."""
        layer, dot, name = text.partition(".")
        if not dot or not name or layer not in LAYERS or not name.replace("_", "").isalnum():
            raise ConfigError(
                f"invalid table {text!r}: expected <layer>.<name> with layer one of {LAYERS}"
            )
        return cls(layer, name)

    def __str__(self) -> str:
        return f"{self.layer}.{self.name}"


# Every table the pipelines write. Listing the catalog instead of the storage keeps `lake show`
# identical on local disk and object stores (no bucket listing permissions needed).
CATALOG: tuple[TableRef, ...] = (
    TableRef("bronze", "trips"),
    TableRef("silver", "trips"),
    TableRef("silver", "trips_rejected"),
    TableRef("gold", "trips"),
    TableRef("bronze", "docs"),
    TableRef("silver", "docs"),
    TableRef("gold", "docs"),
    TableRef("bronze", "feedback"),
    TableRef("bronze", "predictions"),
    TableRef("silver", "predictions"),
    TableRef("bronze", "rag_requests"),
    TableRef("silver", "rag_requests"),
    TableRef("bronze", "trip_outcomes"),
    TableRef("gold", "live_error"),
)
APPEND_ATTEMPTS = 5


class Lakehouse:
    """Opens, writes and describes the Delta tables under one root."""

    def __init__(self, settings: LakehouseSettings) -> None:
        self.settings = settings
        self.root = settings.root
        self._options = settings.storage_options()

    def uri(self, ref: TableRef) -> str:
        """Return the storage URI of a table."""
        return f"{self.root}/{ref.layer}/{ref.name}"

    def exists(self, ref: TableRef) -> bool:
        """Return True when the table has at least one commit."""
        return DeltaTable.is_deltatable(self.uri(ref), storage_options=self._options)

    def open(self, ref: TableRef, version: int | None = None) -> DeltaTable:
        """Open a table at a version (latest by default); raise DataError if it is not there."""
        try:
            return DeltaTable(self.uri(ref), version=version, storage_options=self._options)
        except TableNotFoundError as exc:
            raise DataError(
                f"table {ref} not found at {self.uri(ref)}: run `lakeserve lake seed` first"
            ) from exc
        except DeltaError as exc:
            if version is not None and "version" in str(exc).lower():
                raise DataError(f"table {ref} has no version {version}") from exc
            raise DataError(f"cannot open table {ref}: {exc}") from exc

    def overwrite(
        self,
        ref: TableRef,
        batches: Iterable[pa.RecordBatch],
        schema: pa.Schema,
        *,
        metadata: dict[str, str],
        partition_by: list[str] | None = None,
        description: str | None = None,
    ) -> int:
        """Replace a table's contents in one atomic commit, streaming batches; return new version.

        Batches are consumed lazily, so memory stays bounded by one batch. If the process dies
        before the commit, the table keeps its previous version (orphaned files are vacuumable).
        """
        reader = pa.RecordBatchReader.from_batches(schema, _in_thread(batches))
        write_deltalake(
            self.uri(ref),
            reader,
            mode="overwrite",
            schema_mode="overwrite",
            partition_by=partition_by,
            description=description,
            storage_options=self._options,
            commit_properties=CommitProperties(
                custom_metadata={METADATA_PREFIX + k: v for k, v in metadata.items()}
            ),
        )
        return self.open(ref).version()

    def append(
        self,
        ref: TableRef,
        rows: pa.Table,
        *,
        metadata: dict[str, str],
        partition_by: list[str] | None = None,
        merge_schema: bool = False,
    ) -> int:
        """Append rows in one commit (creating the table if needed); return the new version.

        Appends from several processes do not conflict in Delta; the one race left is two
        writers creating the table at once, and the loser simply appends on its retry.
        `partition_by` applies when this append creates the table. `merge_schema` adds the
        rows' new columns (and new fields of struct columns) to the table's schema.
        """
        for attempt in range(1, APPEND_ATTEMPTS + 1):
            try:
                write_deltalake(
                    self.uri(ref),
                    rows,
                    mode="append",
                    schema_mode="merge" if merge_schema else None,
                    partition_by=partition_by,
                    storage_options=self._options,
                    commit_properties=CommitProperties(
                        custom_metadata={METADATA_PREFIX + k: v for k, v in metadata.items()}
                    ),
                )
                break
            except CommitFailedError:
                if attempt == APPEND_ATTEMPTS:
                    raise
        return self.open(ref).version()

    def commit_metadata(self, ref: TableRef) -> dict[str, str]:
        """Return the lakeserve.* metadata of the table's latest commit ({} if none)."""
        if not self.exists(ref):
            return {}
        history = self.open(ref).history(limit=1)
        return _lakeserve_metadata(history[0] if history else {})

    def dataset(self, ref: TableRef, version: int | None = None) -> ds.Dataset:
        """Return a pyarrow dataset of the table's files at a version (the log decides which).

        The files are read with pyarrow's own filesystems. deltalake's `to_pyarrow_dataset`
        routes reads through a Python filesystem handler whose threads make about half of all
        processes abort at exit ("terminate called without an active exception", 134).
        """
        table = self.open(ref, version)
        schema = pa.schema(table.schema().to_arrow())
        partition_columns = table.metadata().partition_columns
        filesystem = self._filesystem()
        paths = [_fs_path(uri) for uri in table.file_uris()]
        partitioning = None
        if partition_columns:
            partitioning = ds.partitioning(
                pa.schema([schema.field(name) for name in partition_columns]), flavor="hive"
            )
        return ds.dataset(
            paths,
            schema=schema,
            format="parquet",
            filesystem=filesystem,
            partitioning=partitioning,
            partition_base_dir=_fs_path(self.uri(ref)),
        )

    def read(
        self, ref: TableRef, version: int | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        """Read a whole table (or some columns) at a version."""
        return self.dataset(ref, version).to_table(columns=columns)

    def built_from(self, ref: TableRef, expected: dict[str, str]) -> bool:
        """Return True when the latest commit's metadata has every `expected` key and value."""
        metadata = self.commit_metadata(ref)
        return bool(metadata) and all(metadata.get(k) == v for k, v in expected.items())

    def scan(self, ref: TableRef, version: int | None = None) -> Iterator[pa.RecordBatch]:
        """Stream a table's record batches at a version."""
        yield from self.dataset(ref, version).to_batches()

    def _filesystem(self) -> pafs.FileSystem:
        if not self.settings.is_remote:
            return pafs.LocalFileSystem()
        settings = self.settings
        endpoint = settings.s3_endpoint_url
        scheme = "https"
        if endpoint and "://" in endpoint:
            scheme, endpoint = endpoint.split("://", 1)
        return pafs.S3FileSystem(
            access_key=settings.s3_access_key_id.get_secret_value()
            if settings.s3_access_key_id
            else None,
            secret_key=settings.s3_secret_access_key.get_secret_value()
            if settings.s3_secret_access_key
            else None,
            region=settings.s3_region,
            endpoint_override=endpoint,
            scheme=scheme,
        )

    def describe(self, ref: TableRef) -> dict[str, Any]:
        """Return version, row count, partitioning, schema and last commit of a table."""
        table = self.open(ref)
        actions = pa.table(table.get_add_actions(flatten=True))
        rows = sum(v or 0 for v in actions.column("num_records").to_pylist())
        schema = pa.schema(table.schema().to_arrow())
        latest = table.history(limit=1)[0]
        return {
            "table": str(ref),
            "uri": self.uri(ref),
            "version": table.version(),
            "rows": rows,
            "files": actions.num_rows,
            "partition_by": table.metadata().partition_columns,
            "schema": {field.name: str(field.type) for field in schema},
            "last_operation": latest.get("operation"),
            "last_commit_ms": latest.get("timestamp"),
            "metadata": _lakeserve_metadata(latest),
        }

    def tables(self) -> list[TableRef]:
        """Return the catalogued tables that exist under the root."""
        return [ref for ref in CATALOG if self.exists(ref)]


def _lakeserve_metadata(commit: dict[str, Any]) -> dict[str, str]:
    """Return the lakeserve.* keys of one commit's info, without the prefix."""
    return {
        key.removeprefix(METADATA_PREFIX): str(value)
        for key, value in commit.items()
        if key.startswith(METADATA_PREFIX)
    }


def _fs_path(uri: str) -> str:
    """Turn a table or file URI into a path of pyarrow's filesystems (`bucket/key` for S3)."""
    return uri.split("://", 1)[1] if "://" in uri else uri


_DONE = object()


def _in_thread(batches: Iterable[pa.RecordBatch], depth: int = 2) -> Iterator[pa.RecordBatch]:
    """Produce batches on a worker thread and hand them over through a bounded queue.

    deltalake's writer pulls batches from inside its async runtime; a producer that reads another
    Delta table there would start a runtime within a runtime and panic. The bounded queue keeps
    memory at `depth` batches.
    """
    handoff: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        handoff.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(_DONE)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            handoff.put(exc)

    worker = threading.Thread(target=produce, name="delta-batch-producer", daemon=True)
    worker.start()
    try:
        while True:
            item = handoff.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join(timeout=5)
