"""Split documents into overlapping chunks whose ids depend only on document and position."""

from __future__ import annotations

from dataclasses import dataclass

# Preferred places to end a chunk, best first.
_BREAKS = ("\n\n", "\n", ". ", "; ", ", ", " ")


@dataclass(frozen=True)
class Chunk:
    """A piece of one document, as indexed."""

    id: str
    doc_id: str
    index: int
    text: str


def chunk_id(doc_id: str, index: int) -> str:
    """Return the id of a document's `index`-th chunk (stable across runs and machines)."""
    return f"{doc_id}::{index:04d}"


def split_text(text: str, size: int, overlap: int) -> list[str]:
    """Split `text` into pieces of at most `size` characters overlapping by about `overlap`.

    Pieces end at the best natural break (paragraph, line, sentence, word) in their second half,
    and the next piece starts `overlap` characters before that end, on a word boundary.
    """
    if size <= 0 or not 0 <= overlap < size:
        raise ValueError(f"need size > 0 and 0 <= overlap < size, got {size=}, {overlap=}")
    text = text.strip()
    if len(text) <= size:
        return [text] if text else []
    pieces: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            window = text[start + size // 2 : end]
            for mark in _BREAKS:
                cut = window.rfind(mark)
                if cut != -1:
                    end = start + size // 2 + cut + len(mark)
                    break
        piece = text[start:end].strip()
        if piece:
            pieces.append(piece)
        if end >= len(text):
            break
        next_start = max(end - overlap, start + 1)
        # Move forward to the start of a word so chunks do not begin mid-word.
        while next_start < end and not text[next_start - 1].isspace():
            next_start += 1
        start = next_start if next_start < end else end
    return pieces


def chunk_document(doc_id: str, text: str, size: int, overlap: int) -> list[Chunk]:
    """Return the chunks of one document in order."""
    return [
        Chunk(chunk_id(doc_id, i), doc_id, i, piece)
        for i, piece in enumerate(split_text(text, size, overlap))
    ]
