"""The stdlib document corpus: extraction and its bronze -> silver -> gold tables."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lakehouse.docs import extract
from lakehouse.docs.pipeline import BRONZE, GOLD, SILVER, seed_docs
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse

pytestmark = pytest.mark.integration


def test_extraction_documents_public_names_defined_in_the_module() -> None:
    ids = {record["doc_id"]: record for record in extract.documents("json")}
    assert ids["json"]["kind"] == "module"
    assert ids["json.dumps"]["kind"] == "function"
    assert ids["json.dumps"]["signature"].startswith("(obj, *, skipkeys=False")
    assert not [doc_id for doc_id in ids if any(p.startswith("_") for p in doc_id.split("."))]
    # JSONDecoder is re-exported by json: it is documented where it is defined.
    assert "json.JSONDecoder" not in ids
    decoder = {record["doc_id"]: record for record in extract.documents("json.decoder")}
    assert decoder["json.decoder.JSONDecoder.decode"]["kind"] == "method"
    assert " at 0x" not in decoder["json.decoder.JSONDecoder.decode"]["signature"]


def test_extraction_walks_subpackages_in_a_child_process(tmp_path: Path) -> None:
    output = tmp_path / "docs.jsonl"
    subprocess.run(
        [sys.executable, "-m", "lakehouse.docs.extract", str(output), "json"], check=True
    )
    ids = {json.loads(line)["doc_id"] for line in output.read_text().splitlines()}
    assert {"json", "json.decoder", "json.decoder.JSONDecodeError"} <= ids


def test_default_corpus_skips_gui_and_side_effect_modules() -> None:
    modules = extract.default_modules()
    assert "json" in modules and "collections" in modules
    assert not {"tkinter", "antigravity", "this", "turtle", "idlelib"} & set(modules)


@pytest.fixture
def lake(tmp_path: Path) -> Lakehouse:
    return Lakehouse(LakehouseSettings(home=tmp_path))


def test_gold_docs_are_clean_unique_and_hashed(lake: Lakehouse) -> None:
    results = seed_docs(lake, ["json", "collections"])
    assert [r.table for r in results] == ["bronze.docs", "silver.docs", "gold.docs"]
    silver = results[1]
    assert silver.rows + sum(silver.rejected.values()) == results[0].rows
    assert silver.rejected["empty_docstring"] > 0
    gold = lake.read(GOLD).to_pylist()
    ids = [row["doc_id"] for row in gold]
    assert len(ids) == len(set(ids))
    assert {"json.dumps", "collections.OrderedDict.move_to_end"} <= set(ids)
    for row in gold:
        assert row["text"].startswith(row["title"])
        assert row["content_hash"] == hashlib.sha256(row["text"].encode()).hexdigest()
        assert len(row["text"]) > len(row["title"]) + 20


def test_rerun_writes_nothing_and_unchanged_docs_keep_updated_at(lake: Lakehouse) -> None:
    seed_docs(lake, ["json"])
    first = {r["doc_id"]: r["updated_at"] for r in lake.read(GOLD).to_pylist()}
    versions = [lake.open(ref).version() for ref in (BRONZE, SILVER, GOLD)]
    assert all(r.skipped for r in seed_docs(lake, ["json"]))
    assert [lake.open(ref).version() for ref in (BRONZE, SILVER, GOLD)] == versions

    seed_docs(lake, ["json", "shlex"])  # the corpus grows: json docs are unchanged
    second = lake.read(GOLD).to_pylist()
    for row in second:
        if row["doc_id"] in first:
            assert row["updated_at"] == first[row["doc_id"]], row["doc_id"]
    assert any(row["doc_id"].startswith("shlex") for row in second)
    assert {r["updated_at"] for r in second if r["doc_id"].startswith("shlex")} - set(
        first.values()
    )
