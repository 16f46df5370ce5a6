"""`lakeserve lake`: build and inspect the Delta lakehouse (bronze -> silver -> gold)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from kernel.console import err, out
from kernel.errors import ConfigError
from lakehouse.docs.pipeline import seed_docs
from lakehouse.seed import LayerResult, seed_trips
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse

app = typer.Typer(
    help="Build and inspect the Delta lakehouse (bronze -> silver -> gold).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command("seed")
def seed(
    scale: Annotated[
        int, typer.Option(help="Rows in the raw feed (bronze), 1,000 to 50,000,000.")
    ] = 100_000,
    seed: Annotated[int, typer.Option(help="Random seed: same seed and scale, same tables.")] = 42,
    rows_per_batch: Annotated[
        int | None,
        typer.Option(
            help="Rows per daily batch; bounds memory use (default: the rows span 14 days, "
            "at most 250,000 a day).",
            min=1,
        ),
    ] = None,
    force: Annotated[bool, typer.Option(help="Rebuild every layer even if up to date.")] = False,
    modules: Annotated[
        str | None,
        typer.Option(help="Document corpus: only these stdlib modules (comma-separated)."),
    ] = None,
    only: Annotated[
        str | None, typer.Option(help="Build only 'trips' or only 'docs' (default: both).")
    ] = None,
) -> None:
    """Build the trip and document tables (bronze, silver, gold); skip up-to-date layers."""
    if only not in {None, "trips", "docs"}:
        raise ConfigError(f"--only must be 'trips' or 'docs', got {only!r}")
    lake = Lakehouse(LakehouseSettings())
    columns = (
        TextColumn("{task.description:<7}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(layer: str, rows: int, total: int) -> None:
            if layer not in tasks:
                tasks[layer] = bar.add_task(layer, total=total)
            bar.advance(tasks[layer], rows)

        results: list[LayerResult] = []
        if only in {None, "trips"}:
            results += seed_trips(lake, scale, seed, rows_per_batch, progress=advance, force=force)
        if only in {None, "docs"}:
            docs = bar.add_task("docs", total=None)
            wanted = [m.strip() for m in modules.split(",") if m.strip()] if modules else None
            results += seed_docs(lake, wanted, force=force)
            bar.update(docs, total=1, completed=1)
    table = Table(title=f"Lakehouse at {lake.root}")
    for name in ("table", "version", "rows", "status"):
        table.add_column(name, justify="right" if name in {"version", "rows"} else "left")
    for result in results:
        status = "up to date" if result.skipped else "written"
        table.add_row(result.table, str(result.version), f"{result.rows:,}", status)
    out.print(table)
    for result in results:
        if result.rejected:
            dropped = ", ".join(f"{k}={v:,}" for k, v in result.rejected.items() if v)
            out.print(f"[dim]{result.table} rejected: {dropped}[/dim]")


@app.command("show")
def show(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    schema: Annotated[bool, typer.Option(help="Also print each table's schema.")] = False,
) -> None:
    """List the lakehouse tables with their version, row count and schema."""
    lake = Lakehouse(LakehouseSettings())
    described = [lake.describe(ref) for ref in lake.tables()]
    if as_json:
        out.print_json(json.dumps({"root": lake.root, "tables": described}))
        return
    if not described:
        out.print(f"no tables under {lake.root}: run `lakeserve lake seed`", soft_wrap=True)
        return
    table = Table(title=f"Lakehouse at {lake.root}")
    for name in ("table", "version", "rows", "files", "partitioned by", "built from"):
        table.add_column(name, justify="right" if name in {"version", "rows", "files"} else "left")
    for info in described:
        meta = info["metadata"]
        built_from = meta.get("source") or ", ".join(
            f"{k}={meta[k]}" for k in ("seed", "scale", "python", "modules") if k in meta
        )
        table.add_row(
            info["table"],
            str(info["version"]),
            f"{info['rows']:,}",
            str(info["files"]),
            ", ".join(info["partition_by"]) or "-",
            built_from,
        )
    out.print(table)
    if schema:
        for info in described:
            out.print(f"\n[bold]{info['table']}[/bold]")
            for name, type_ in info["schema"].items():
                out.print(f"  {name}: {type_}")


@app.command("sql")
def sql(
    statement: Annotated[str, typer.Argument(help="One SELECT; tables are <layer>.<name>.")],
    at: Annotated[
        list[str] | None,
        typer.Option("--at", help="Read a table at a version: <layer>.<name>=<version>."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON records.")] = False,
    limit: Annotated[int, typer.Option(help="Rows printed at most.", min=1)] = 100,
) -> None:
    """Query the lakehouse with DuckDB, read-only: lake sql "SELECT count(*) FROM gold.trips"."""
    from lakehouse.sql import parse_pins, query

    result = query(Lakehouse(LakehouseSettings()), statement, parse_pins(at or []))
    shown = result.slice(0, limit)
    if as_json:
        out.print_json(json.dumps(shown.to_pylist(), default=str))
    else:
        table = Table()
        for name in shown.column_names:
            table.add_column(name)
        for record in shown.to_pylist():
            table.add_row(*("" if v is None else str(v) for v in record.values()))
        out.print(table)
    if result.num_rows > limit:
        err.print(f"{result.num_rows:,} rows, {limit} shown (--limit)")


@app.command("requests")
def requests(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Rebuild silver.predictions and silver.rag_requests from bronze (one row per request id)
    and gold.live_error (predictions joined with the trips' actual fares).

    Serving appends at least once (a retried commit may land twice); silver keeps the first
    row of each request (and row). A run on unchanged bronze does nothing.
    """
    from lakehouse.requests import LOGS, refresh_live_error, refresh_silver

    lake = Lakehouse(LakehouseSettings())
    results = [r for r in (refresh_silver(lake, log) for log in LOGS) if r is not None]
    live = refresh_live_error(lake)  # after silver: it joins silver.predictions
    results += [live] if live is not None else []
    if as_json:
        out.print_json(json.dumps([r.__dict__ for r in results]))
        return
    if not results:
        out.print("no request log in bronze yet: serve some requests first", soft_wrap=True)
        return
    table = Table(title="Request log, deduplicated")
    for name in ("table", "from bronze version", "bronze rows", "rows", "rebuilt"):
        table.add_column(name)
    for r in results:
        bronze_rows = "-" if r.skipped else f"{r.bronze_rows:,}"
        rebuilt = "no (up to date)" if r.skipped else "yes"
        table.add_row(r.table, str(r.bronze_version), bronze_rows, f"{r.rows:,}", rebuilt)
    out.print(table)


@app.command("feed")
def feed(
    url: Annotated[str, typer.Option(help="The Lakeserve API.")] = "http://127.0.0.1:8000",
    model: Annotated[str, typer.Option(help="Registered model to ask.")] = "fare-regressor",
    trips: Annotated[int, typer.Option(help="Trips to send, one request each.", min=1)] = 500,
    seed: Annotated[int, typer.Option(help="Same seed and day, same trips.")] = 7,
    day: Annotated[int, typer.Option(help="Live day of the feed (0, 1, ...).", min=0)] = 0,
    shift: Annotated[str, typer.Option(help="none, borough or distance: change the trips.")] = (
        "none"
    ),
    outcomes: Annotated[
        bool, typer.Option(help="Also record the trips' actual fares in bronze.trip_outcomes.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Send live trips to serving (X-Request-Id trip-<id>) and record their actual fares.

    The API key comes from LAKESERVE_API_KEY. Exits 5 when any request failed.
    """
    import os

    from kernel.errors import Upstream
    from lakehouse.trips.feed import live_trips, record_outcomes, send

    frame = live_trips(trips, seed, day, shift)
    statuses = send(url, model, frame, os.environ.get("LAKESERVE_API_KEY"))
    lake = Lakehouse(LakehouseSettings())
    version = record_outcomes(lake, frame) if outcomes else None
    result = {"trips": len(frame), "statuses": {str(k): v for k, v in sorted(statuses.items())},
              "outcomes_version": version, "shift": shift, "seed": seed, "day": day}  # fmt: skip
    if as_json:
        out.print_json(json.dumps(result))
    else:
        out.print(result)
    if set(statuses) != {200}:
        failed = sum(v for k, v in statuses.items() if k != 200)
        raise Upstream(f"{failed} of {len(frame)} requests failed (by status, 0 = no answer "
                       f"from {url}): {result['statuses']}")  # fmt: skip
