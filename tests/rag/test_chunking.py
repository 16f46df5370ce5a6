"""Chunking: bounded sizes, overlap, full coverage, stable ids."""

from __future__ import annotations

import itertools

import pytest

from rag.chunking import chunk_document, chunk_id, split_text

TEXT = " ".join(f"Sentence number {i} explains one more detail of the API." for i in range(60))


def test_short_text_is_one_chunk_and_empty_text_none() -> None:
    assert split_text("  hello world  ", 100, 10) == ["hello world"]
    assert split_text("   ", 100, 10) == []


def test_chunks_respect_the_size_and_cover_every_word() -> None:
    pieces = split_text(TEXT, 300, 60)
    assert len(pieces) > 5
    assert all(len(piece) <= 300 for piece in pieces)
    assert set(TEXT.split()) == {word for piece in pieces for word in piece.split()}


def test_consecutive_chunks_overlap_and_start_on_a_word() -> None:
    pieces = split_text(TEXT, 300, 60)
    for first, second in itertools.pairwise(pieces):
        assert second.split()[0] in first.split()  # the overlap repeats the end of the previous
        assert second[0].isalnum()
    assert all(piece.endswith(".") for piece in pieces[:-1])  # cut at sentence ends


def test_paragraph_breaks_are_preferred() -> None:
    text = ("a" * 150 + " " + "b" * 40) + "\n\n" + "c" * 150
    assert split_text(text, 250, 20)[0] == "a" * 150 + " " + "b" * 40


def test_chunk_ids_are_stable_and_ordered() -> None:
    chunks = chunk_document("json.dumps", TEXT, 300, 60)
    assert [c.id for c in chunks] == [chunk_id("json.dumps", i) for i in range(len(chunks))]
    assert chunks[0].id == "json.dumps::0000"
    assert chunks == chunk_document("json.dumps", TEXT, 300, 60)


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (100, 100), (100, -1)])
def test_invalid_sizes_are_rejected(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="need size > 0"):
        split_text(TEXT, size, overlap)
