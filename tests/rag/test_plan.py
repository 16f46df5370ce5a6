"""The incremental index plan: add, update, delete, unchanged, and recovery from a partial run."""

from __future__ import annotations

from rag.chunking import chunk_document
from rag.plan import IndexedDoc, SourceDoc, chunk_fingerprint, plan_sync

SIZE, OVERLAP = 120, 20
LONG = " ".join(f"Word{i} sentence." for i in range(60))


def indexed_as(doc: SourceDoc, size: int = SIZE, overlap: int = OVERLAP) -> IndexedDoc:
    ids = {c.id for c in chunk_document(doc.doc_id, doc.text, size, overlap)}
    return IndexedDoc(chunk_ids=ids, hashes={chunk_fingerprint(doc.content_hash, size, overlap)})


def test_first_run_adds_every_chunk() -> None:
    docs = [SourceDoc("a", LONG, "h1"), SourceDoc("b", "short text", "h2")]
    plan = plan_sync(docs, {}, SIZE, OVERLAP)
    assert (plan.added, plan.updated, plan.deleted, plan.unchanged) == (2, 0, 0, 0)
    assert len(plan.write) == len(chunk_document("a", LONG, SIZE, OVERLAP)) + 1
    assert plan.delete == []


def test_rerun_without_changes_writes_nothing() -> None:
    docs = [SourceDoc("a", LONG, "h1"), SourceDoc("b", "short text", "h2")]
    plan = plan_sync(docs, {d.doc_id: indexed_as(d) for d in docs}, SIZE, OVERLAP)
    assert plan.empty and plan.unchanged == 2


def test_a_shorter_edit_rewrites_the_doc_and_deletes_its_extra_chunks() -> None:
    old = SourceDoc("a", LONG, "h1")
    new = SourceDoc("a", "now a short text", "h9")
    plan = plan_sync([new], {"a": indexed_as(old)}, SIZE, OVERLAP)
    assert plan.updated == 1
    assert [chunk.text for chunk, _ in plan.write] == ["now a short text"]
    assert plan.delete == sorted(indexed_as(old).chunk_ids - {"a::0000"})


def test_a_removed_doc_loses_all_its_chunks() -> None:
    gone = SourceDoc("gone", LONG, "h1")
    plan = plan_sync([], {"gone": indexed_as(gone)}, SIZE, OVERLAP)
    assert plan.deleted == 1
    assert plan.delete == sorted(indexed_as(gone).chunk_ids)


def test_a_doc_half_written_by_an_interrupted_run_is_rewritten() -> None:
    doc = SourceDoc("a", LONG, "h2")
    full = indexed_as(doc)
    current = chunk_fingerprint("h2", SIZE, OVERLAP)
    partial = IndexedDoc(chunk_ids=set(sorted(full.chunk_ids)[:2]), hashes={current})
    mixed = IndexedDoc(
        chunk_ids=full.chunk_ids, hashes={chunk_fingerprint("h1", SIZE, OVERLAP), current}
    )
    for state in (partial, mixed):
        plan = plan_sync([doc], {"a": state}, SIZE, OVERLAP)
        assert plan.updated == 1
        assert {chunk.id for chunk, _ in plan.write} == full.chunk_ids
        assert plan.delete == []


def test_new_chunking_parameters_rewrite_documents_even_with_the_same_ids() -> None:
    doc = SourceDoc("a", LONG, "h1")
    before = indexed_as(doc, SIZE, OVERLAP)
    plan = plan_sync([doc], {"a": before}, SIZE + 5, OVERLAP)
    assert plan.updated == 1 and plan.write
