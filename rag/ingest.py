"""Ingestion: gold table -> chunks -> embeddings (Ray Data actor pool) -> Chroma, incrementally."""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import structlog

from kernel.cluster import ray_session
from kernel.errors import DataError
from kernel.settings import RaySettings
from lakehouse.tables import Lakehouse, TableRef
from rag.chunking import Chunk
from rag.plan import Plan, SourceDoc, chunk_fingerprint, plan_sync
from rag.settings import RagSettings
from rag.store import CHUNK_INDEX, DOC_ID, FINGERPRINT, Index

log = structlog.get_logger(__name__)

Progress = Callable[[int], None]
LEASE_TTL_S = 120.0  # a killed ingest blocks the next one at most this long


@dataclass(frozen=True)
class ColumnMapping:
    """Which columns of the table make a document."""

    id: str = "doc_id"
    text: tuple[str, ...] = ("text",)
    title: str | None = "title"
    metadata: tuple[str, ...] = ("title", "kind", "module", "source", "updated_at")
    content_hash: str | None = "content_hash"

    def columns(self) -> list[str]:
        """Return every column read, in a stable order."""
        wanted = [self.id, *self.text, *([self.title] if self.title else []), *self.metadata]
        if self.content_hash:
            wanted.append(self.content_hash)
        return list(dict.fromkeys(wanted))


@dataclass
class IngestSummary:
    """What a run did: documents by outcome, chunks written and deleted, speed."""

    table: str
    table_version: int
    collection: str
    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    chunks_written: int = 0
    chunks_deleted: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    chunks_per_s: float = 0.0
    executor: str = "ray"
    changed_at: float | None = None  # when the collection's chunks last changed, epoch s

    def as_dict(self) -> dict[str, Any]:
        """Return the summary as plain JSON-able values."""
        return asdict(self)


def read_documents(
    lake: Lakehouse, ref: TableRef, mapping: ColumnMapping, version: int | None = None
) -> tuple[list[SourceDoc], int]:
    """Read the table's documents at `version` (latest if None); return them and the version."""
    if not lake.exists(ref):
        raise DataError(f"table {ref} does not exist: run `lakeserve lake seed` first")
    table = lake.open(ref, version)
    names = set(pa_names(table.schema()))
    missing = [c for c in mapping.columns() if c not in names]
    if missing:
        raise DataError(
            f"table {ref} has no column(s) {', '.join(missing)}; it has {', '.join(sorted(names))}"
        )
    table_version = int(table.version())
    frame = lake.read(ref, columns=mapping.columns(), version=table_version)
    docs: list[SourceDoc] = []
    seen: set[str] = set()
    for row in frame.to_pylist():
        doc_id = row[mapping.id]
        if doc_id is None or str(doc_id) in seen:
            raise DataError(f"table {ref}: column {mapping.id} must be unique and not null")
        seen.add(str(doc_id))
        text = "\n\n".join(str(row[c]) for c in mapping.text if row[c])
        content_hash = (
            str(row[mapping.content_hash])
            if mapping.content_hash
            else hashlib.sha256(f"{row.get(mapping.title or '', '')}\n{text}".encode()).hexdigest()
        )
        metadata = {k: _scalar(row[k]) for k in mapping.metadata if row[k] is not None}
        if mapping.title:
            metadata["title"] = str(row[mapping.title] or "")
        docs.append(SourceDoc(str(doc_id), text, content_hash, metadata))
    return docs, table_version


def pa_names(schema: Any) -> list[str]:
    """Return the field names of a Delta schema."""
    return [f.name for f in schema.fields]


def _scalar(value: Any) -> str | int | float | bool:
    return value if isinstance(value, str | int | float | bool) else str(value)


def chunk_record(chunk: Chunk, doc: SourceDoc, fingerprint: str) -> tuple[str, dict[str, Any]]:
    """Return the text indexed for a chunk (title first, for context) and its metadata."""
    title = str(doc.metadata.get("title", ""))
    # Later chunks lose the document's heading; repeat it so each chunk stands on its own.
    text = chunk.text if not title or chunk.text.startswith(title) else f"{title}\n{chunk.text}"
    meta = {**doc.metadata, DOC_ID: doc.doc_id, CHUNK_INDEX: chunk.index, FINGERPRINT: fingerprint}
    return text, meta


def ingest(
    lake: Lakehouse,
    ref: TableRef,
    settings: RagSettings,
    mapping: ColumnMapping,
    *,
    version: int | None = None,
    executor: str = "ray",
    ray_settings: RaySettings | None = None,
    write_batch: int = 256,
    on_plan: Callable[[int], None] | None = None,
    on_progress: Progress | None = None,
) -> IngestSummary:
    """Bring the index in line with the table: write new/changed chunks, delete stale ones."""
    started = time.monotonic()
    docs, table_version = read_documents(lake, ref, mapping, version)
    index = Index.open(settings, create=True)
    # One ingest per collection: a second one exits (Busy, exit 7) instead of interleaving.
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    index.take_lease(owner, LEASE_TTL_S)
    try:
        size, overlap = settings.chunk_size, settings.chunk_overlap
        plan = plan_sync(docs, index.state(), size, overlap)
        summary = IngestSummary(
            table=str(ref),
            table_version=table_version,
            collection=settings.rag_collection,
            added=plan.added,
            updated=plan.updated,
            deleted=plan.deleted,
            unchanged=plan.unchanged,
            executor=executor,
        )
        log.info("ingest plan", **summary.as_dict())
        if on_plan:
            on_plan(len(plan.write))
        if not plan.empty:
            _write(index, plan, summary, settings, ray_settings, write_batch, owner, on_progress)
    finally:
        index.release_lease(owner)
    summary.chunks_total = index.count()
    summary.changed_at = index.changed_at()
    summary.seconds = round(time.monotonic() - started, 2)
    if summary.chunks_written:
        summary.chunks_per_s = round(summary.chunks_written / summary.seconds, 1)
    return summary


def _write(
    index: Index,
    plan: Plan,
    summary: IngestSummary,
    settings: RagSettings,
    ray_settings: RaySettings | None,
    write_batch: int,
    owner: str,
    on_progress: Progress | None,
) -> None:
    """Apply a plan under the lease; the revision moves before the first write and after the
    last, so replicas reload after any write, even of an ingest killed halfway."""
    size, overlap = settings.chunk_size, settings.chunk_overlap
    index.bump_revision()
    renewed = time.monotonic()
    if plan.delete:
        index.delete(plan.delete)
        summary.chunks_deleted = len(plan.delete)
    records: dict[str, tuple[str, dict[str, Any]]] = {}
    for chunk, doc in plan.write:
        records[chunk.id] = chunk_record(
            chunk, doc, chunk_fingerprint(doc.content_hash, size, overlap)
        )
    if records:
        # Longest first: each batch holds chunks of similar length, so little of it is padding.
        items = sorted(
            ({"id": cid, "text": text} for cid, (text, _) in records.items()),
            key=lambda item: -len(item["text"]),
        )
        embed = _embed_with_ray if summary.executor == "ray" else _embed_in_process
        for ids, vectors in embed(items, settings, ray_settings or RaySettings(), write_batch):
            index.upsert(ids, vectors, [records[i][0] for i in ids], [records[i][1] for i in ids])
            summary.chunks_written += len(ids)
            if on_progress:
                on_progress(len(ids))
            if time.monotonic() - renewed > LEASE_TTL_S / 3:
                index.renew_lease(owner, LEASE_TTL_S)
                renewed = time.monotonic()
    index.bump_revision()


Batches = Generator[tuple[list[str], np.ndarray], None, None]


def embedder_fields(settings: RagSettings) -> dict[str, Any]:
    """What an embedding actor needs of the settings (no secrets, paths made absolute)."""
    return {
        "home": str(settings.home.resolve()),
        "embedding_model": settings.embedding_model,
        "embedding_backend": settings.embedding_backend,
        "embedding_cache": str(settings.embedding_cache_dir),
        "embedding_batch_size": settings.embedding_batch_size,
    }


def _embed_in_process(
    items: list[dict[str, str]], settings: RagSettings, _: RaySettings, write_batch: int
) -> Batches:
    """Embed in a thread while the caller writes the previous batch to Chroma."""
    from rag.embeddings import open_embeddings

    model = open_embeddings(settings)
    ready: queue.Queue[tuple[list[str], np.ndarray] | BaseException | None] = queue.Queue(2)
    stop = threading.Event()

    def produce() -> None:
        try:
            for start in range(0, len(items), write_batch):
                if stop.is_set():
                    return
                batch = items[start : start + write_batch]
                ready.put(([b["id"] for b in batch], model.encode([b["text"] for b in batch])))
            ready.put(None)
        except BaseException as exc:  # handed to the consumer, raised there
            ready.put(exc)

    worker = threading.Thread(target=produce, name="embed", daemon=True)
    worker.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                ready.get_nowait()  # unblock a producer waiting to put


class EmbedBatch:
    """A Ray Data actor: loads the model once, embeds batches of chunk texts."""

    def __init__(self, settings: dict[str, Any], threads: int) -> None:
        from rag.embeddings import open_embeddings

        self.model = open_embeddings(RagSettings.model_validate(settings), threads=threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vectors = self.model.encode([str(t) for t in batch["text"]])
        return {"id": batch["id"], "embedding": vectors.astype(np.float32)}


def _embed_with_ray(
    items: list[dict[str, str]], settings: RagSettings, ray_settings: RaySettings, write_batch: int
) -> Batches:
    import ray
    import ray.data

    with ray_session(ray_settings):
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours is the rich bar driven by written chunks
        context.verbose_stats_logs = False
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        actors = max(1, cpus // 2) if ray_settings.ray_address else 1
        threads = cpus if not ray_settings.ray_address else 2
        dataset = ray.data.from_items(items).map_batches(
            EmbedBatch,
            fn_constructor_kwargs={"settings": embedder_fields(settings), "threads": threads},
            batch_size=write_batch,
            batch_format="numpy",
            # On a cluster the pool starts whole: one actor per node's 2 CPUs, from the start.
            compute=ray.data.ActorPoolStrategy(
                min_size=actors if ray_settings.ray_address else 1, max_size=actors
            ),
            num_cpus=threads if not ray_settings.ray_address else 2,
        )
        for batch in dataset.iter_batches(batch_size=write_batch, batch_format="numpy"):
            yield [str(i) for i in batch["id"]], np.asarray(batch["embedding"])
