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


def test_extraction_documents_public_names_once_under_the_shortest_public_path() -> None:
    ids = {record["doc_id"]: record for record in extract.documents(["json", "json.decoder"])}
    assert ids["json"]["kind"] == "module"
    assert ids["json.dumps"]["kind"] == "function"
    assert ids["json.dumps"]["signature"].startswith("(obj, *, skipkeys=False")
    assert not [doc_id for doc_id in ids if any(p.startswith("_") for p in doc_id.split("."))]
    # JSONDecoder is defined in json.decoder and re-exported by json: users write json.JSONDecoder.
    assert ids["json.JSONDecoder.decode"]["kind"] == "method"
    assert " at 0x" not in ids["json.JSONDecoder.decode"]["signature"]
    assert "json.decoder.JSONDecoder" not in ids
    assert ids["json.decoder"]["kind"] == "module"


# Names people look for that live in C or private modules, in submodules of a package, in a
# private base class, on a hidden instance or behind a cache decorator.
EXPECTED = {
    "bisect.insort": "function", "bisect.bisect_left": "function", "struct.pack": "function",
    "struct.unpack": "function", "hashlib.sha256": "function", "hashlib.pbkdf2_hmac": "function",
    "sqlite3.connect": "function", "sqlite3.Connection.execute": "method",
    "csv.reader": "function", "csv.writer": "function", "pickle.dumps": "function",
    "pickle.load": "function", "threading.Lock": "function", "heapq.heappush": "function",
    "itertools.groupby": "class", "math.gcd": "function", "os.path.join": "function",
    "os.path.splitext": "function", "random.sample": "function", "random.shuffle": "function",
    "asyncio.run": "function", "asyncio.gather": "function",
    "concurrent.futures.ThreadPoolExecutor": "class",
    "argparse.ArgumentParser.add_argument": "method", "ipaddress.IPv4Network.hosts": "method",
    "urllib.parse.urlsplit": "function", "io.TextIOWrapper.readline": "method",
}  # fmt: skip


def test_names_users_expect_are_documented_under_their_public_names(tmp_path: Path) -> None:
    output = tmp_path / "docs.jsonl"
    roots = sorted({name.split(".")[0] for name in EXPECTED})
    subprocess.run(
        [sys.executable, "-m", "lakehouse.docs.extract", str(output), *roots], check=True
    )
    records = {r["doc_id"]: r for r in map(json.loads, output.read_text().splitlines())}
    found = {name: records[name]["kind"] for name in EXPECTED if name in records}
    assert found == EXPECTED
    assert all(records[name]["docstring"] for name in EXPECTED)
    # Each object once: not again under the module that defines it or another alias.
    for duplicate in ("asyncio.runners.run", "posixpath.join", "array.ArrayType", "_bisect.insort"):
        assert duplicate not in records
    assert records["os.path.join"]["module"] == "os.path"


def test_extraction_walks_subpackages_in_a_child_process(tmp_path: Path) -> None:
    output = tmp_path / "docs.jsonl"
    subprocess.run(
        [sys.executable, "-m", "lakehouse.docs.extract", str(output), "json"], check=True
    )
    ids = {json.loads(line)["doc_id"] for line in output.read_text().splitlines()}
    assert {"json", "json.decoder", "json.JSONDecodeError", "json.scanner"} <= ids


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
        assert len(row["text"]) >= len(row["title"]) + 2 + 8


def test_short_docstrings_that_say_what_a_name_is_are_kept(lake: Lakehouse) -> None:
    results = seed_docs(lake, ["enum", "threading", "ast"])
    ids = {row["doc_id"] for row in lake.read(GOLD).to_pylist()}
    # "Support for flags" and "Thread-local data": short, and all users get to read.
    assert {"enum.Flag", "threading.local"} <= ids
    assert "ast.Del" not in ids  # its docstring is "Del"
    assert results[1].rejected["too_short"] > 0


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
