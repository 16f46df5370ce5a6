"""Plan an incremental index update: which chunks to write and which to delete.

The index records, on every chunk, the content hash of the document it came from. A document is
unchanged only if its indexed chunk ids are exactly the expected ones and all carry the current
hash; anything else (new, edited, half-written by an interrupted run) is rewritten whole, and
chunks of documents that left the table are deleted. Re-running a plan that was interrupted
therefore converges to exactly the right chunks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rag.chunking import Chunk, chunk_document


@dataclass(frozen=True)
class SourceDoc:
    """A gold row as ingestion sees it."""

    doc_id: str
    text: str
    content_hash: str
    metadata: Mapping[str, str | int | float | bool] = field(default_factory=dict)


@dataclass
class IndexedDoc:
    """What the index holds for one document."""

    chunk_ids: set[str] = field(default_factory=set)
    hashes: set[str] = field(default_factory=set)


@dataclass
class Plan:
    """Chunks to write (with their document), chunk ids to delete, and document counts."""

    write: list[tuple[Chunk, SourceDoc]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        """Return True when the index is already up to date."""
        return not self.write and not self.delete


CHUNKER_VERSION = "2"


def chunk_fingerprint(content_hash: str, size: int, overlap: int) -> str:
    """Return what each chunk records as its source: content and how it was chunked.

    A new chunk size changes every chunk's text without changing the document, so the chunking
    parameters are part of what must match for a document to count as unchanged.
    """
    return f"{content_hash}:{size}:{overlap}:{CHUNKER_VERSION}"


def plan_sync(
    docs: Iterable[SourceDoc], indexed: Mapping[str, IndexedDoc], size: int, overlap: int
) -> Plan:
    """Compare the source documents with the index and return what to change.

    `IndexedDoc.hashes` holds the fingerprints (`chunk_fingerprint`) the chunks were written with.
    """
    plan = Plan()
    seen: set[str] = set()
    for doc in docs:
        seen.add(doc.doc_id)
        chunks = chunk_document(doc.doc_id, doc.text, size, overlap)
        expected = {chunk.id for chunk in chunks}
        current = indexed.get(doc.doc_id)
        if (
            current is not None
            and current.chunk_ids == expected
            and current.hashes == {chunk_fingerprint(doc.content_hash, size, overlap)}
        ):
            plan.unchanged += 1
            continue
        if current is None:
            plan.added += 1
        else:
            plan.updated += 1
            plan.delete.extend(sorted(current.chunk_ids - expected))
        plan.write.extend((chunk, doc) for chunk in chunks)
    for doc_id, current in sorted(indexed.items()):
        if doc_id not in seen:
            plan.deleted += 1
            plan.delete.extend(sorted(current.chunk_ids))
    return plan
