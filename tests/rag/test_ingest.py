"""Ingestion for real: stdlib docs from Delta, real embeddings, embedded Chroma and a server."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from lakehouse.docs.pipeline import GOLD
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from rag.settings import RagSettings
from rag.store import FINGERPRINT, REVISION_KEY, Index
from tests.utils.cli import spawn
from tests.utils.platform import MEDIUM_MODULES, IndexEnv, clean_env, small_docs_home
from tests.utils.processes import BIN

pytestmark = pytest.mark.integration


def snapshot(env: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Return {chunk id: (fingerprint, text)} of the index the environment points at."""
    settings = RagSettings(
        home=Path(env["LAKESERVE_HOME"]),
        chroma_url=env.get("LAKESERVE_CHROMA_URL"),
        rag_collection=env["LAKESERVE_RAG_COLLECTION"],
    )
    return {c.id: (str(c.metadata[FINGERPRINT]), c.text) for c in Index.open(settings).chunks()}


@pytest.fixture(params=["embedded", "server"])
def index_env(request: pytest.FixtureRequest, tmp_path: Path) -> IndexEnv:
    """A small document lakehouse, indexed in embedded Chroma or in the Chroma server."""
    home = small_docs_home(tmp_path / "home")
    env = clean_env(
        LAKESERVE_HOME=str(home), LAKESERVE_RAG_COLLECTION=f"docs-{tmp_path.name[-20:]}"
    )
    if request.param == "server":
        env["LAKESERVE_CHROMA_URL"] = request.getfixturevalue("chroma_url")
    return IndexEnv(home, env)


def edit_gold(home: Path) -> dict[str, str]:
    """Write a new gold version: one document changed, one removed, one added."""
    lake = Lakehouse(LakehouseSettings(home=home))
    table = lake.read(GOLD).sort_by("doc_id")
    ids = table.column("doc_id").to_pylist()
    changed, removed = ids[0], ids[1]
    text = "Completely rewritten: this function now parses TOML configuration files."
    rows = [r for r in table.to_pylist() if r["doc_id"] != removed]
    for row in rows:
        if row["doc_id"] == changed:
            row["text"] = text
            row["content_hash"] = hashlib.sha256(text.encode()).hexdigest()
    added = dict(rows[-1], doc_id="json.brand_new", title="json.brand_new()", text="A new doc.")
    added["content_hash"] = hashlib.sha256(b"A new doc.").hexdigest()
    rows.append(added)
    new = pa.Table.from_pylist(rows, schema=table.schema)
    lake.overwrite(GOLD, new.to_batches(), new.schema, metadata={"source": "test edit"})
    return {"changed": changed, "removed": removed, "added": "json.brand_new", "text": text}


def test_rerun_without_changes_writes_nothing(index_env: IndexEnv) -> None:
    first = index_env.ingest("--executor", "local")
    before = snapshot(index_env.env)
    second = index_env.ingest("--executor", "local")

    assert first["chunks_written"] >= first["added"] > 30
    assert first["chunks_written"] == first["chunks_total"] == len(before) > 50
    assert second["chunks_written"] == second["chunks_deleted"] == 0
    assert second["unchanged"] == first["added"]
    assert second["added"] == second["updated"] == second["deleted"] == 0
    assert snapshot(index_env.env) == before


def test_changed_removed_and_added_rows_reach_the_index(index_env: IndexEnv) -> None:
    index_env.ingest("--executor", "local")
    edit = edit_gold(index_env.home)

    summary = index_env.ingest("--executor", "local")
    after = snapshot(index_env.env)

    assert (summary["added"], summary["updated"], summary["deleted"]) == (1, 1, 1)
    assert not any(i.startswith(f"{edit['removed']}::") for i in after)
    changed = [text for i, (_, text) in after.items() if i.startswith(f"{edit['changed']}::")]
    assert len(changed) == 1 and edit["text"] in changed[0]
    assert f"{edit['added']}::0000" in after
    assert summary["chunks_total"] == len(after)


def test_a_killed_run_is_completed_by_the_next(chroma_url: str, tmp_path: Path) -> None:
    home = small_docs_home(tmp_path / "home", MEDIUM_MODULES)
    env = clean_env(
        LAKESERVE_HOME=str(home), LAKESERVE_CHROMA_URL=chroma_url, LAKESERVE_RAG_COLLECTION="killed"
    )
    reference_env = {**env, "LAKESERVE_RAG_COLLECTION": "reference"}
    IndexEnv(home, reference_env).ingest("--executor", "local")
    expected = snapshot(reference_env)

    command = [str(BIN / "lakeserve"), "rag", "ingest", "--executor", "local", "--write-batch", "4"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, start_new_session=True)
    written = wait_for_partial_index(env, process, len(expected))
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    assert 0 < written < len(expected)
    # The revision moved before the first write: replicas reload the partial index.
    settings = RagSettings(home=home, chroma_url=chroma_url, rag_collection="killed")
    assert Index.open(settings).metadata.get(REVISION_KEY)

    summary = IndexEnv(home, env).ingest("--executor", "local")
    assert summary["chunks_written"] > 0
    assert snapshot(env) == expected


def wait_for_partial_index(env: dict[str, str], process: subprocess.Popen[Any], total: int) -> int:
    """Wait until some but not all chunks are in the index; return how many."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, "ingestion finished before it could be interrupted"
        try:
            count = len(snapshot(env))
        except Exception:  # the collection does not exist yet
            count = 0
        if count >= 16:
            return count
        time.sleep(0.2)
    raise TimeoutError("ingestion wrote nothing within 180 s")


def test_a_second_ingest_of_a_collection_exits_7_while_one_runs(
    chroma_url: str, tmp_path: Path
) -> None:
    home = small_docs_home(tmp_path / "home")
    env = clean_env(
        LAKESERVE_HOME=str(home), LAKESERVE_CHROMA_URL=chroma_url, LAKESERVE_RAG_COLLECTION="busy"
    )
    settings = RagSettings(home=home, chroma_url=chroma_url, rag_collection="busy")
    index = Index.open(settings, create=True)
    index.take_lease("ingest-pod-7:1:abc", ttl_s=60)  # another run, on another host
    result = spawn("rag", "ingest", "--executor", "local", env=env)
    assert result.code == 7, result.err
    assert "another ingest (ingest-pod-7:1:abc) is writing collection 'busy'" in result.err
    assert index.count() == 0
    index.release_lease("ingest-pod-7:1:abc")
    assert IndexEnv(home, env).ingest("--executor", "local")["chunks_written"] > 0


def test_missing_table_exits_3_with_a_hint(tmp_path: Path) -> None:
    env = clean_env(LAKESERVE_HOME=str(tmp_path))
    result = spawn("rag", "ingest", env=env)
    assert result.code == 3
    assert "table gold.docs does not exist: run `lakeserve lake seed` first" in result.err


def test_unknown_column_exits_3_and_names_it(tmp_path: Path) -> None:
    home = small_docs_home(tmp_path / "home")
    env = clean_env(LAKESERVE_HOME=str(home))
    result = spawn("rag", "ingest", "--text-columns", "body", env=env)
    assert result.code == 3
    assert "table gold.docs has no column(s) body" in result.err


def test_unreachable_chroma_exits_5(tmp_path: Path) -> None:
    home = small_docs_home(tmp_path / "home")
    env = clean_env(LAKESERVE_HOME=str(home), LAKESERVE_CHROMA_URL="http://127.0.0.1:9")
    result = spawn("rag", "ingest", "--executor", "local", env=env)
    assert result.code == 5, result.err
    assert "http://127.0.0.1:9" in result.err
    assert "Traceback" not in result.err


def test_bad_chunk_settings_exit_2(tmp_path: Path) -> None:
    env = clean_env(
        LAKESERVE_HOME=str(tmp_path), LAKESERVE_CHUNK_SIZE="200", LAKESERVE_CHUNK_OVERLAP="300"
    )
    result = spawn("rag", "ingest", env=env)
    assert result.code == 2
    assert "LAKESERVE_CHUNK_OVERLAP must be smaller than LAKESERVE_CHUNK_SIZE" in result.err
