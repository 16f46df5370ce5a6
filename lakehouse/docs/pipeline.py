"""Build bronze -> silver -> gold document tables from the stdlib documentation.

bronze.docs: one row per documented name as extracted; silver.docs: cleaned (no empty or
duplicate docs, tidy whitespace); gold.docs: what RAG ingests, with a content hash and an
`updated_at` that only moves when the text changes, so ingestion can be incremental.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pajson
import structlog

from kernel.errors import ConfigError, LakeserveError
from lakehouse.seed import LayerResult, skipped
from lakehouse.tables import Lakehouse, TableRef

BRONZE = TableRef("bronze", "docs")
SILVER = TableRef("silver", "docs")
GOLD = TableRef("gold", "docs")
EXTRACTOR_VERSION = "3"  # 2: re-exports under their public names, os.path; 3: os facade
RULES_VERSION = "2"  # 2: short docstrings are kept ("Support for flags" is enum.Flag)
MIN_TEXT_CHARS = 8

BRONZE_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("kind", pa.string()),
        ("module", pa.string()),
        ("signature", pa.string()),
        ("docstring", pa.string()),
        ("source", pa.string()),
    ]
)
GOLD_SCHEMA = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        ("title", pa.string()),
        ("text", pa.string()),
        ("kind", pa.string()),
        ("module", pa.string()),
        ("source", pa.string()),
        ("updated_at", pa.timestamp("us", tz="UTC")),
        ("content_hash", pa.string()),
    ]
)
log = structlog.get_logger(__name__)
Progress = Callable[[str, int, int], None]


def _extract(modules: list[str] | None) -> pa.Table:
    source = f"python {platform.python_version()} standard library"
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "docs.jsonl"
        command = [sys.executable, "-m", "lakehouse.docs.extract", str(output), *(modules or [])]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise LakeserveError(f"document extraction failed: {done.stderr.strip()[-500:]}")
        if output.stat().st_size == 0:
            raise ConfigError(f"no documents found for --modules {','.join(modules or [])}")
        table = pajson.read_json(output)
    table = table.append_column("source", pa.array([source] * table.num_rows, pa.string()))
    return table.select(BRONZE_SCHEMA.names).cast(BRONZE_SCHEMA)


def _names_only(doc_id: str, text: str) -> bool:
    """True for a docstring that only repeats the name (ast.Del: "Del")."""
    return text.rstrip(".").lower() == doc_id.rsplit(".", 1)[-1].lower()


def _clean(bronze: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    """Apply the silver rules; return kept rows and counts per rule."""
    rows = bronze.to_pylist()
    kept, seen = [], set()
    counts = {"empty_docstring": 0, "duplicate_doc_id": 0, "too_short": 0}
    for row in rows:
        text = re.sub(r"\n{3,}", "\n\n", (row["docstring"] or "").strip())
        if not text:
            counts["empty_docstring"] += 1
        elif row["doc_id"] in seen:
            counts["duplicate_doc_id"] += 1
        elif len(text) < MIN_TEXT_CHARS or _names_only(row["doc_id"], text):
            counts["too_short"] += 1
        else:
            seen.add(row["doc_id"])
            kept.append({**row, "docstring": text})
    return pa.Table.from_pylist(kept, schema=BRONZE_SCHEMA), counts


def _gold(silver: pa.Table, previous: dict[str, tuple[str, object]], now: dt.datetime) -> pa.Table:
    rows = []
    for row in silver.to_pylist():
        title = row["doc_id"] + (row["signature"] or "")
        title = title if len(title) <= 160 else title[:157] + "..."
        text = f"{title}\n\n{row['docstring']}"
        digest = hashlib.sha256(text.encode()).hexdigest()
        old_hash, old_time = previous.get(row["doc_id"], (None, None))
        rows.append(
            {
                "doc_id": row["doc_id"],
                "title": title,
                "text": text,
                "kind": row["kind"],
                "module": row["module"],
                "source": row["source"],
                "updated_at": old_time if old_hash == digest else now,
                "content_hash": digest,
            }
        )
    return pa.Table.from_pylist(rows, schema=GOLD_SCHEMA)


def seed_docs(
    lake: Lakehouse, modules: list[str] | None = None, force: bool = False
) -> list[LayerResult]:
    """Build the three document layers; skip layers whose input has not changed."""
    params = {
        "python": platform.python_version(),
        "modules": ",".join(modules) if modules else "all",
        "extractor": EXTRACTOR_VERSION,
    }
    results: list[LayerResult] = []
    if not force and lake.built_from(BRONZE, params):
        results.append(skipped(lake, BRONZE))
    else:
        bronze = _extract(modules)
        version = lake.overwrite(BRONZE, bronze.to_batches(), BRONZE_SCHEMA, metadata=params)
        results.append(LayerResult(str(BRONZE), version, bronze.num_rows, skipped=False))

    silver_params = {"source": f"{BRONZE}@{results[0].version}", "rules": RULES_VERSION}
    if not force and lake.built_from(SILVER, silver_params):
        results.append(skipped(lake, SILVER))
    else:
        silver, counts = _clean(lake.read(BRONZE))
        metadata = {**silver_params, **{f"rejected.{k}": str(v) for k, v in counts.items()}}
        version = lake.overwrite(SILVER, silver.to_batches(), BRONZE_SCHEMA, metadata=metadata)
        results.append(LayerResult(str(SILVER), version, silver.num_rows, False, counts))

    gold_params = {"source": f"{SILVER}@{results[1].version}"}
    if not force and lake.built_from(GOLD, gold_params):
        results.append(skipped(lake, GOLD))
    else:
        previous: dict[str, tuple[str, object]] = {}
        if lake.exists(GOLD):
            old = lake.read(GOLD, columns=["doc_id", "content_hash", "updated_at"])
            previous = {r["doc_id"]: (r["content_hash"], r["updated_at"]) for r in old.to_pylist()}
        now = dt.datetime.now(dt.UTC)
        gold = _gold(lake.read(SILVER), previous, now)
        version = lake.overwrite(GOLD, gold.to_batches(), GOLD_SCHEMA, metadata=gold_params)
        changed = sum(1 for t in gold.column("updated_at").to_pylist() if t == now)
        log.info("gold docs written", version=version, rows=gold.num_rows, changed=changed)
        results.append(LayerResult(str(GOLD), version, gold.num_rows, skipped=False))
    return results
