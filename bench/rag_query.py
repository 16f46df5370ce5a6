"""Query latency of Lakeserve retrieval at ~1k, 10k and 100k chunks, beside LangChain's Chroma.

Takes the chunks and embeddings of an ingested index (`lakeserve rag ingest` of the stdlib
corpus), and builds one fresh embedded Chroma collection per size: smaller sizes are a prefix of
the real chunks; larger sizes add copies of them with small Gaussian noise on the vectors
(renormalised) and their own ids, documents and doc ids, so the HNSW index and BM25 really hold
that many entries. Each of the 115 questions of rag/qa/stdlib.jsonl is timed per mode after a
warm-up pass. Peer: `langchain_chroma.Chroma(...).similarity_search(q, k=5)` on the same
collection with the same embedding model. Also prints the memory the keyword index holds per
size (chunks and BM25 arrays, by tracemalloc) and its linear projection to 1M chunks.

    LAKESERVE_HOME=.lakeserve .venv/bin/python bench/rag_query.py [--sizes 1000,10000,100000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from rag.embeddings import LocalEmbeddings
from rag.retrieval import HybridRetriever, KeywordIndex, Tuning
from rag.settings import RagSettings
from rag.store import DOC_ID, Index

QA = Path(__file__).parents[1] / "rag" / "qa" / "stdlib.jsonl"
console = Console(stderr=True)


def source_chunks(settings: RagSettings) -> tuple[list[str], list[str], list[dict[str, Any]], Any]:
    """Read every chunk of the ingested index with its vector."""
    collection = Index.open(settings).collection
    got = collection.get(include=["documents", "metadatas", "embeddings"])
    return got["ids"], got["documents"], got["metadatas"], np.asarray(got["embeddings"])


def build(path: Path, size: int, source: tuple[Any, ...], rng: np.random.Generator) -> Any:
    """Fill a fresh collection with `size` chunks (real ones first, then noisy copies)."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    ids, texts, metas, vectors = source
    client = chromadb.PersistentClient(str(path), ChromaSettings(anonymized_telemetry=False))
    collection = client.create_collection(
        "bench", embedding_function=None, metadata={"hnsw:space": "cosine"}
    )
    written = 0
    copy = 0
    while written < size:
        take = min(size - written, len(ids))
        if copy == 0:
            batch_vectors = vectors[:take]
            batch = (ids[:take], texts[:take], metas[:take])
        else:
            noisy = vectors[:take] + rng.normal(0, 0.02, vectors[:take].shape)
            batch_vectors = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
            batch = (
                [f"{i}#{copy}" for i in ids[:take]],
                [f"{t} (copy {copy})" for t in texts[:take]],
                [{**m, DOC_ID: f"{m[DOC_ID]}#{copy}"} for m in metas[:take]],
            )
        for start in range(0, take, 5000):
            end = min(start + 5000, take)
            collection.add(
                ids=batch[0][start:end],
                documents=batch[1][start:end],
                metadatas=batch[2][start:end],
                embeddings=batch_vectors[start:end],
            )
        written += take
        copy += 1
    return client


def percentiles(samples: list[float]) -> tuple[float, float]:
    values = np.asarray(samples) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def keyword_memory(index: Index) -> int:
    """Bytes a replica's keyword index holds: the chunks read from Chroma and the BM25 arrays
    (traced by tracemalloc in a separate pass, so that tracing does not slow the timed build)."""
    import gc
    import tracemalloc

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = KeywordIndex(list(index.chunks()), stem=Tuning().stem)
        gc.collect()
        size = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    del held
    return size


def measure(
    client: Any, embeddings: LocalEmbeddings, questions: list[str], repeat: int
) -> tuple[dict[str, tuple[float, float]], float, int]:
    """Time every contender on every question; return p50/p99 per contender, the BM25 build's
    seconds and the keyword index's bytes."""
    from langchain_chroma import Chroma

    collection = client.get_collection("bench", embedding_function=None)
    retriever = HybridRetriever(Index(client, collection), embeddings, Tuning(candidates=30))
    started = time.perf_counter()
    retriever.refresh()
    build_s = time.perf_counter() - started
    memory = keyword_memory(Index(client, collection))
    peer = Chroma(client=client, collection_name="bench", embedding_function=embeddings)
    contenders = {
        "langchain Chroma.similarity_search": lambda q: peer.similarity_search(q, k=5),
        "lakeserve vector": lambda q: retriever.search(q, 5, mode="vector", floor=False),
        "lakeserve bm25": lambda q: retriever.search(q, 5, mode="bm25", floor=False),
        "lakeserve hybrid": lambda q: retriever.search(q, 5, mode="hybrid", floor=False),
    }
    results: dict[str, tuple[float, float]] = {}
    for name, run in contenders.items():
        for question in questions:  # warm-up: caches, HNSW pages, BM25 arrays
            run(question)
        samples = []
        for _ in range(repeat):
            for question in questions:
                started = time.perf_counter()
                run(question)
                samples.append(time.perf_counter() - started)
        results[name] = percentiles(samples)
    return results, build_s, memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--repeat", type=int, default=1, help="Timed passes over the questions.")
    args = parser.parse_args()
    settings = RagSettings()
    source = source_chunks(settings)
    console.print(f"{len(source[0]):,} chunks read from {settings.chroma_target}")
    questions = [json.loads(line)["question"] for line in QA.open()]
    embeddings = LocalEmbeddings(settings.embedding_model)
    rng = np.random.default_rng(0)
    table = Table(title=f"Retrieval latency, {len(questions)} questions x {args.repeat}, k=5 (ms)")
    columns = (
        "chunks",
        "contender",
        "p50 ms",
        "p99 ms",
        "p50 / p99 vs peer",
        "BM25 build s",
        "BM25 MB",
    )
    for column in columns:
        table.add_column(column, justify="left" if column == "contender" else "right")
    memory: dict[int, int] = {}
    for size in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="lakeserve-rag-query-") as tmp:
            started = time.perf_counter()
            client = build(Path(tmp), size, source, rng)
            console.print(f"{size:,} chunks written in {time.perf_counter() - started:.1f}s")
            results, build_s, memory[size] = measure(client, embeddings, questions, args.repeat)
            peer_p50, peer_p99 = results["langchain Chroma.similarity_search"]
            for name, (p50, p99) in results.items():
                hybrid = name == "lakeserve hybrid"
                table.add_row(
                    f"{size:,}",
                    name,
                    f"{p50:.1f}",
                    f"{p99:.1f}",
                    f"{p50 / peer_p50:.2f}x / {p99 / peer_p99:.2f}x",
                    f"{build_s:.1f}" if hybrid else "",
                    f"{memory[size] / 2**20:.0f}" if hybrid else "",
                )
            del client
    Console().print(table)
    if len(memory) >= 2:  # least squares: bytes = fixed + per chunk x chunks
        sizes = np.array(list(memory), dtype=float)
        per_chunk, fixed = np.polyfit(sizes, np.array(list(memory.values()), dtype=float), 1)
        Console().print(
            f"BM25 keyword index: {per_chunk / 1024:.2f} KB per chunk (+{fixed / 2**20:.0f} MB); "
            f"projected at 1,000,000 chunks: {(fixed + per_chunk * 1e6) / 2**30:.2f} GB per "
            f"RAG replica (linear fit over {', '.join(f'{int(n):,}' for n in sizes)} chunks)"
        )


if __name__ == "__main__":
    main()
