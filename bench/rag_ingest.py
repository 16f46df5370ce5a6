"""Ingest gold.docs with Lakeserve and with a naive LangChain loop; same documents, same chunks.

Prints chunks/s end to end (read the table, chunk, embed, write to a fresh embedded Chroma) for
`lakeserve rag ingest` on each executor and embedding backend (torch, onnx, onnx-int8), for a
second Lakeserve run over the unchanged table (the incremental no-op), and for the baseline:
`langchain_chroma.Chroma.from_documents` over LangChain Documents built from the same rows with
the same chunker and the same local model (sentence-transformers on torch). Each Lakeserve index
is then asked the QA sets (rag/qa: stdlib.jsonl and tasks-test.jsonl), its recall@5 printed
beside the torch index's. LAKESERVE_* variables are ignored: every run uses the defaults.

    .venv/bin/python bench/rag_ingest.py [--home DIR] [--limit 300] \
        [--runs local:torch,local:onnx,local:onnx-int8,ray:onnx]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kernel.logs import LogSettings, configure_logging
from kernel.settings import RaySettings
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse, TableRef
from rag.chunking import chunk_document
from rag.ingest import ColumnMapping, ingest
from rag.settings import RagSettings

BIN = Path(sys.executable).parent
DOCS = TableRef.parse("gold.docs")
COLLECTION = "bench-docs"
console = Console(stderr=True)


@dataclass
class Result:
    """One ingestion run."""

    name: str
    chunks: int
    seconds: float
    note: str = ""
    recall: dict[str, float] | None = None

    @property
    def rate(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0


def seed_home(home: Path) -> None:
    """Build gold.docs (the whole stdlib corpus) under a fresh LAKESERVE_HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAKESERVE_")}
    env["LAKESERVE_HOME"] = str(home)
    console.print(f"seeding gold.docs under {home}")
    subprocess.run([str(BIN / "lakeserve"), "lake", "seed", "--scale", "1000"], env=env,
                   check=True, capture_output=True)  # fmt: skip


def bench_lake(home: Path, work: Path, limit: int | None) -> Lakehouse:
    """Return the lakehouse to ingest from: `home`'s, or a copy of its first `limit` docs."""
    source = Lakehouse(LakehouseSettings(home=home))
    if limit is None:
        return source
    rows = source.read(DOCS)
    rows = rows.slice(0, min(limit, rows.num_rows))
    lake = Lakehouse(LakehouseSettings(home=work))
    lake.overwrite(DOCS, rows.to_batches(), rows.schema, metadata={"bench_limit": str(limit)})
    return lake


def progress(name: str, total: int) -> Any:
    """Return an on_progress callback printing every tenth of the way."""
    done = [0, 0]

    def advance(n: int) -> None:
        done[0] += n
        tenth = done[0] * 10 // max(total, 1)
        if tenth > done[1]:
            done[1] = tenth
            console.print(f"  {name}: {done[0]:,}/{total:,} chunks")

    return advance


QA_SETS = ("stdlib.jsonl", "tasks-test.jsonl")


def bench_settings(chroma: Path, backend: str) -> RagSettings:
    return RagSettings(home=chroma.parent, chroma_path=chroma, rag_collection=COLLECTION,
                       embedding_backend=backend, embedding_cache=chroma.parent / "models")  # fmt: skip


def run_lakeserve(
    lake: Lakehouse, chroma: Path, executor: str, backend: str, total: int, ray_tmp: Path
) -> Any:
    return ingest(lake, DOCS, bench_settings(chroma, backend), ColumnMapping(), executor=executor,
                  ray_settings=RaySettings(ray_address=None, ray_tmpdir=ray_tmp),
                  on_progress=progress(f"lakeserve {executor}/{backend}", total))  # fmt: skip


def recall(chroma: Path, backend: str) -> dict[str, float]:
    """Recall@5 of the index, hybrid and vector-only, over the QA sets (documents of the index)."""
    import rag
    from rag.evaluate import evaluate, load_qa
    from rag.service import open_retriever

    retriever = open_retriever(bench_settings(chroma, backend))
    qa_dir = Path(rag.__file__).parent / "qa"
    questions = [q for name in QA_SETS for q in load_qa(qa_dir / name)]
    scores = evaluate(retriever, questions)
    return {mode: scores[mode]["recall@5"] for mode in ("hybrid", "vector")}


def scalar(value: Any) -> str | int | float | bool:
    return value if isinstance(value, str | int | float | bool) else str(value)


def run_baseline(lake: Lakehouse, chroma: Path) -> int:
    """The LangChain way: load rows into Documents, split, `Chroma.from_documents`."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from langchain_chroma import Chroma
    from langchain_core.documents import Document

    from rag.embeddings import LocalEmbeddings

    settings = RagSettings()
    mapping = ColumnMapping()
    docs: list[Document] = []
    ids: list[str] = []
    for row in lake.read(DOCS, columns=mapping.columns()).to_pylist():
        title = str(row["title"] or "")
        meta = {k: scalar(row[k]) for k in mapping.metadata if row[k] is not None}
        size, overlap = settings.chunk_size, settings.chunk_overlap
        for chunk in chunk_document(row["doc_id"], row["text"] or "", size, overlap):
            text = (
                chunk.text
                if not title or chunk.text.startswith(title)
                else f"{title}\n{chunk.text}"
            )
            docs.append(
                Document(
                    page_content=text,
                    metadata={**meta, "doc_id": row["doc_id"], "chunk": chunk.index},
                )
            )
            ids.append(chunk.id)
    console.print(f"  langchain: {len(docs):,} chunks, embedding")
    client = chromadb.PersistentClient(
        path=str(chroma), settings=ChromaSettings(anonymized_telemetry=False)
    )
    store = Chroma.from_documents(
        docs,
        embedding=LocalEmbeddings(settings.embedding_model, settings.embedding_batch_size),
        ids=ids,
        collection_name=COLLECTION,
        client=client,
        collection_metadata={"hnsw:space": "cosine"},
    )
    return int(store._collection.count())


def count_chunks(lake: Lakehouse) -> tuple[int, int]:
    """Return the number of documents and of chunks they make with the default settings."""
    settings = RagSettings()
    rows = lake.read(DOCS, columns=["doc_id", "text"]).to_pylist()
    size, overlap = settings.chunk_size, settings.chunk_overlap
    chunks = sum(len(chunk_document(r["doc_id"], r["text"] or "", size, overlap)) for r in rows)
    return len(rows), chunks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--home", type=Path, help="LAKESERVE_HOME with gold.docs (default: seed a temporary one)."
    )
    parser.add_argument("--limit", type=int, help="Ingest only the first N documents.")
    parser.add_argument(
        "--runs",
        default="local:torch,local:onnx,local:onnx-int8,ray:onnx",
        help="executor:backend pairs to ingest with.",
    )
    parser.add_argument("--skip-peer", action="store_true", help="Measure Lakeserve only.")
    args = parser.parse_args()
    for key in [k for k in os.environ if k.startswith("LAKESERVE_")]:
        del os.environ[key]
    configure_logging(LogSettings(level="WARNING"))
    runs = [tuple(r.strip().split(":", 1)) for r in args.runs.split(",") if r.strip()]
    work = Path(tempfile.mkdtemp(prefix="lakeserve-rag-ingest-"))
    ray_tmp = Path(f"/tmp/lsb-ray-{os.getpid()}")
    try:
        home = args.home
        if home is None:
            home = work / "home"
            seed_home(home)
        lake = bench_lake(home.resolve(), work / "lake-copy", args.limit)
        docs, total = count_chunks(lake)
        console.print(f"{docs:,} documents, {total:,} chunks; Chroma directories under {work}")
        results: list[Result] = []

        if not args.skip_peer:
            started = time.perf_counter()
            written = run_baseline(lake, work / "chroma-langchain")
            results.append(
                Result("langchain Chroma.from_documents", written, time.perf_counter() - started)
            )
            console.print(f"  langchain: {written:,} chunks in {results[-1].seconds:.1f}s")

        noop: Result | None = None
        for n, (executor, backend) in enumerate(runs):
            chroma = work / f"chroma-{n}-{executor}-{backend}"
            started = time.perf_counter()
            summary = run_lakeserve(lake, chroma, executor, backend, total, ray_tmp)
            name = f"lakeserve ingest ({executor}, {backend})"
            results.append(Result(name, summary.chunks_written, time.perf_counter() - started))
            console.print(
                f"  {name}: {summary.chunks_written:,} chunks in {results[-1].seconds:.1f}s"
            )
            if summary.chunks_total != total:
                console.print(
                    f"[red]{name} indexed {summary.chunks_total:,} chunks, expected {total:,}"
                )
            if not args.limit:  # the QA sets name documents of the whole corpus
                results[-1].recall = recall(chroma, backend)
                console.print(f"  {name}: recall@5 {results[-1].recall}")
            if noop is None:
                started = time.perf_counter()
                again = run_lakeserve(lake, chroma, executor, backend, total, ray_tmp)
                seconds = time.perf_counter() - started
                noop = Result(
                    f"lakeserve re-run, table unchanged ({executor}, {backend})",
                    again.chunks_written,
                    seconds,
                    f"{again.unchanged:,} docs unchanged",
                )
                results.append(noop)
                console.print(
                    f"  lakeserve no-op: {again.chunks_written} chunks written, {again.unchanged:,} docs unchanged in {noop.seconds:.2f}s"
                )

        peer = results[0] if not args.skip_peer else None
        table = Table(
            title=f"Ingest gold.docs: {docs:,} docs -> {total:,} chunks, all-MiniLM-L6-v2 on CPU, {os.cpu_count()} cores"
        )
        for column in ("contender", "chunks written", "seconds", "chunks/s", "vs baseline",
                       "recall@5 hybrid / vector"):  # fmt: skip
            table.add_column(column, justify="left" if column == "contender" else "right")
        for r in results:
            if r is peer:
                ratio = "1.00x"
            elif peer is None:
                ratio = "-"
            elif r is noop:
                ratio = f"{peer.seconds / r.seconds:.0f}x less time"
            else:
                ratio = f"{r.rate / peer.rate:.2f}x"
            rate = f"{r.rate:.1f}" if r.chunks else f"({total / r.seconds:,.0f} checked)"
            quality = f"{r.recall['hybrid']:.3f} / {r.recall['vector']:.3f}" if r.recall else "-"
            table.add_row(r.name, f"{r.chunks:,}", f"{r.seconds:.2f}", rate, ratio, quality)
        out = Console(width=140)
        out.print(table)
        if noop is not None:
            out.print(f"no-op re-run: {noop.note}, 0 chunks embedded; its ratio is baseline seconds / no-op seconds "
                  "(the baseline has no incremental mode: re-running it re-embeds everything).")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
