"""Hybrid retrieval: vector search and BM25 fused by reciprocal rank, with a relevance floor."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import structlog
from langchain_core.embeddings import Embeddings

from kernel.errors import InvalidInput
from rag.store import DOC_ID, Index, StoredChunk

log = structlog.get_logger(__name__)

RRF_K = 60  # the constant of Cormack et al.; damps the weight of the very first ranks
MODES = ("hybrid", "vector", "bm25")
Filters = Mapping[str, Any]

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
_STOPWORDS_TEXT = """a an and are as at be by can do does for from how i in is it its me my of on
or so that the this to was what when where which who why will with you your"""
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def tokenize(text: str) -> list[str]:
    """Split into lowercase words; snake_case names also give their parts."""
    tokens: list[str] = []
    for word in _WORD.findall(text):
        lower = word.lower()
        if lower in _STOPWORDS:
            continue
        tokens.append(lower)
        parts = [p for p in lower.split("_") if p]
        if len(parts) > 1:
            tokens.extend(parts)
    return tokens


@dataclass
class Hit:
    """A retrieved chunk, its fused score and the score from each retriever (if it found it)."""

    chunk: StoredChunk
    score: float
    similarity: float | None = None
    bm25: float | None = None

    @property
    def doc_id(self) -> str:
        return str(self.chunk.metadata.get(DOC_ID, self.chunk.id))


@dataclass
class Retrieval:
    """What a search found; `found` is False when nothing clears the relevance floor."""

    hits: list[Hit] = field(default_factory=list)
    best_similarity: float | None = None
    found: bool = True


def check_filters(filters: Filters | None) -> dict[str, Any]:
    """Validate metadata filters: {field: value} or {field: [values]}; values are scalars."""
    checked: dict[str, Any] = {}
    for key, value in (filters or {}).items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise InvalidInput(f"filters: invalid field name {key!r}")
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, str | int | float | bool) for v in values):
            raise InvalidInput(
                f"filters.{key}: expected a string, number, boolean or a non-empty list of them"
            )
        checked[key] = value
    return checked


def chroma_where(filters: Filters) -> dict[str, Any] | None:
    """Translate filters into a Chroma `where` clause."""
    clauses = [
        {key: {"$in": value} if isinstance(value, list) else value}
        for key, value in filters.items()
    ]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def matches(metadata: Mapping[str, Any], filters: Filters) -> bool:
    """Return True when a chunk's metadata satisfies every filter."""
    for key, value in filters.items():
        allowed = value if isinstance(value, list) else [value]
        if metadata.get(key) not in allowed:
            return False
    return True


def rrf(rankings: Sequence[Sequence[str]], k: int = RRF_K) -> dict[str, float]:
    """Fuse rankings (ids best first) by reciprocal rank: sum of 1 / (k + rank)."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return scores


class KeywordIndex:
    """BM25 over every chunk of the index, held in memory (rebuilt when the index changes)."""

    def __init__(self, chunks: Sequence[StoredChunk]) -> None:
        import bm25s

        self.chunks = list(chunks)
        self._bm25 = bm25s.BM25()
        if self.chunks:
            self._bm25.index([tokenize(c.text) or ["_"] for c in self.chunks], show_progress=False)

    def search(self, query: str, n: int, filters: Filters) -> list[tuple[StoredChunk, float]]:
        """Return the `n` best chunks with a positive BM25 score, best first."""
        tokens = tokenize(query)
        if not self.chunks or not tokens:
            return []
        scores = np.asarray(self._bm25.get_scores(tokens), dtype=np.float64)
        if filters:
            mask = np.fromiter(
                (matches(c.metadata, filters) for c in self.chunks), bool, len(self.chunks)
            )
            scores = np.where(mask, scores, 0.0)
        n = min(n, len(scores))
        top = np.argpartition(-scores, n - 1)[:n]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(self.chunks[i], float(scores[i])) for i in top if scores[i] > 0]


class Retriever(Protocol):
    """What the chain and the service need from retrieval."""

    @property
    def size(self) -> int:
        """Return the number of chunks searchable now."""
        ...

    def refresh(self) -> bool:
        """Pick up what ingestion changed; return True if anything did."""
        ...

    def search(self, query: str, k: int, filters: Filters | None = None) -> Retrieval:
        """Return the `k` best documents for a query."""
        ...


class HybridRetriever:
    """Vector, keyword and hybrid search over one index."""

    def __init__(
        self,
        index: Index,
        embeddings: Embeddings,
        candidates: int = 30,
        min_similarity: float = 0.37,
    ) -> None:
        self.index = index
        self.embeddings = embeddings
        self.candidates = candidates
        self.min_similarity = min_similarity
        self._keyword = KeywordIndex([])
        self._revision: str | None = None
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        """Return the number of chunks the keyword index holds."""
        return len(self._keyword.chunks)

    def refresh(self) -> bool:
        """Rebuild the keyword index if the collection changed; return True if it did."""
        revision = self.index.revision()
        if revision == self._revision:
            return False
        keyword = KeywordIndex(list(self.index.chunks()))
        with self._lock:
            self._keyword, self._revision = keyword, revision
        log.info("keyword index loaded", chunks=len(keyword.chunks), revision=revision)
        return True

    def vector(self, query: str, n: int, filters: Filters) -> list[tuple[StoredChunk, float]]:
        """Return the `n` nearest chunks by cosine similarity."""
        if not self._keyword.chunks:  # nothing ingested (the keyword index mirrors the collection)
            return []
        embedding = self.embeddings.embed_query(query)
        return self.index.query(embedding, n, chroma_where(filters))

    def keyword(self, query: str, n: int, filters: Filters) -> list[tuple[StoredChunk, float]]:
        """Return the `n` best chunks by BM25."""
        return self._keyword.search(query, n, filters)

    def search(
        self,
        query: str,
        k: int,
        filters: Filters | None = None,
        mode: str = "hybrid",
        floor: bool = True,
    ) -> Retrieval:
        """Return the `k` best documents (best chunk of each) for a query.

        The relevance floor applies to the best vector similarity: fused and BM25 scores are
        not comparable across queries, cosine similarity is.
        """
        if mode not in MODES:
            raise InvalidInput(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        filters = check_filters(filters)
        n = max(self.candidates, k * 4)
        vector = self.vector(query, n, filters) if mode != "bm25" or floor else []
        keyword = self.keyword(query, n, filters) if mode != "vector" else []
        best = max((s for _, s in vector), default=None)
        if floor and (best is None or best < self.min_similarity):
            return Retrieval(best_similarity=best, found=False)
        rankings = {"vector": vector, "bm25": keyword, "hybrid": None}
        similarity = {c.id: s for c, s in vector}
        bm25 = {c.id: s for c, s in keyword}
        chunks = {c.id: c for c, _ in [*vector, *keyword]}
        if mode == "hybrid":
            fused = rrf([[c.id for c, _ in vector], [c.id for c, _ in keyword]])
        else:
            ranked = rankings[mode] or []
            fused = {c.id: 1.0 / (RRF_K + rank) for rank, (c, _) in enumerate(ranked, start=1)}
        hits: list[Hit] = []
        seen: set[str] = set()
        for chunk_id in sorted(fused, key=lambda i: -fused[i]):
            hit = Hit(
                chunks[chunk_id], fused[chunk_id], similarity.get(chunk_id), bm25.get(chunk_id)
            )
            if hit.doc_id in seen:
                continue
            seen.add(hit.doc_id)
            hits.append(hit)
            if len(hits) == k:
                break
        return Retrieval(hits=hits, best_similarity=best, found=bool(hits))
