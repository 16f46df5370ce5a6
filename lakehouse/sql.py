"""Read-only SQL over the lakehouse: DuckDB on the Delta tables' files, one SELECT at a time.

Each table of the catalog that exists is a view `<layer>.<name>` over the pyarrow dataset of its
files at the latest (or a pinned) version, as `Lakehouse.dataset` reads them, so local disk and
S3 behave the same and DuckDB needs no extension (which it would download). The connection is
in memory and locked before the query runs: no file, network or configuration access, and only
a single SELECT (or WITH ... SELECT) statement is accepted.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from kernel.errors import ConfigError, DataError
from lakehouse.tables import LAYERS, Lakehouse, TableRef


def parse_pins(pins: list[str]) -> dict[TableRef, int]:
    """Parse `layer.name=VERSION` pins.

    Raises:
        ConfigError: a pin is malformed.
    """
    parsed: dict[TableRef, int] = {}
    for pin in pins:
        table, eq, version = pin.partition("=")
        if not eq or not version.isdigit():
            raise ConfigError(f"invalid --at {pin!r}: expected <layer>.<name>=<version>")
        parsed[TableRef.parse(table)] = int(version)
    return parsed


def query(lake: Lakehouse, sql: str, at: dict[TableRef, int] | None = None) -> pa.Table:
    """Run one SELECT over the lakehouse tables and return its result.

    Raises:
        ConfigError: not exactly one SELECT, or DuckDB rejects it (syntax, unknown column or
            table, a disabled function).
        DataError: a pinned table or version does not exist.
    """
    import duckdb

    pins = at or {}
    statements = _statements(duckdb, sql)
    con = duckdb.connect(":memory:")
    try:
        known = _register(con, lake, pins)
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        try:
            result = con.sql(statements[0].query)
            table = result.arrow() if result is not None else None
        except duckdb.Error as exc:
            message = str(exc).splitlines()[0]
            hint = f" (tables: {', '.join(known) or 'none: run `lakeserve lake seed`'})"
            raise ConfigError(f"query failed: {message}{hint}") from exc
    finally:
        con.close()
    if table is None:
        raise ConfigError("the statement returned no result")
    return table.read_all() if isinstance(table, pa.RecordBatchReader) else table


def _statements(duckdb: Any, sql: str) -> list[Any]:
    if not sql.strip():
        raise ConfigError("no SQL given")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ConfigError(f"invalid SQL: {str(exc).splitlines()[0]}") from exc
    if len(statements) != 1:
        raise ConfigError(f"one statement at a time, got {len(statements)}")
    if statements[0].type != duckdb.StatementType.SELECT:
        raise ConfigError(f"read-only: only SELECT is allowed, got {statements[0].type.name}")
    return list(statements)


def _register(con: Any, lake: Lakehouse, pins: dict[TableRef, int]) -> list[str]:
    for ref in pins:
        if not lake.exists(ref):
            raise DataError(f"table {ref} does not exist (pinned with --at)")
    for layer in LAYERS:
        con.execute(f"CREATE SCHEMA {layer}")
    names = []
    for ref in lake.tables():
        dataset = lake.dataset(ref, pins.get(ref))
        hidden = f"_{ref.layer}_{ref.name}"
        con.register(hidden, dataset)
        con.execute(f"CREATE VIEW {ref.layer}.{ref.name} AS SELECT * FROM {hidden}")
        names.append(str(ref))
    return names
