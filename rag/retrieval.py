"""Hybrid retrieval: vector search and BM25 fused by reciprocal rank, with a relevance floor."""

from __future__ import annotations

import functools
import gc
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import structlog
from langchain_core.embeddings import Embeddings

from kernel.errors import InvalidInput
from rag.store import CHUNK_INDEX, DOC_ID, Index, StoredChunk
from rag.tracing import stage

log = structlog.get_logger(__name__)

DOCUMENT_CHARS = 700  # of each document in a trace: what the prompt gives the LLM (chain.py)
# Of each candidate in the retrieve stage's trace: 2 x candidates of them per answer, so a
# snippet to recognise it by; the fused sources keep DOCUMENT_CHARS.
SNIPPET_CHARS = 120
RRF_K = 60  # the constant of Cormack et al.; damps the weight of the very first ranks
MODES = ("hybrid", "vector", "bm25")
Filters = Mapping[str, Any]

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[0-9]+")
_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")
# Words of the question, not of its topic: task phrasing ("how can I", "is there a way to").
_STOPWORDS_TEXT = """a an and any are as at be been but by can could do does doing for from get
give given how i if in into is it its just me my need of on one or out should so some such that
the their them then there these this those to up want way we what when where whether which
while who why will with without would you your python built builtin library standard module"""
_STOPWORDS = frozenset(_STOPWORDS_TEXT.split())
# Modules deprecated by PEP 594 or PEP 632: correct answers for almost nobody asking today.
DEPRECATED = frozenset(
    [
        "aifc",
        "asynchat",
        "asyncore",
        "audioop",
        "cgi",
        "cgitb",
        "chunk",
        "crypt",
        "distutils",
        "imghdr",
        "imp",
        "mailcap",
        "msilib",
        "nis",
        "nntplib",
        "ossaudiodev",
        "pipes",
        "smtpd",
        "sndhdr",
        "spwd",
        "sunau",
        "telnetlib",
        "uu",
        "xdrlib",
    ]
)


@functools.cache
def _stemmer() -> Any:
    import Stemmer  # PyStemmer: Snowball stemmers in C

    return Stemmer.Stemmer("english")


def tokenize(text: str, stem: bool = True) -> list[str]:
    """Split into lowercase words, stemmed; snake_case and CamelCase names also give their parts.

    `TemporaryDirectory` gives `temporarydirectory`, `temporari`, `directori`, so a question
    saying "temporary directory" meets the class by name.
    """
    tokens: list[str] = []
    for word in _WORD.findall(text):
        lower = word.lower()
        if lower in _STOPWORDS:
            continue
        tokens.append(lower)
        parts = [p.lower() for piece in word.split("_") for p in _CAMEL.findall(piece)]
        if len(parts) > 1:
            tokens.extend(p for p in parts if p not in _STOPWORDS)
    if stem and tokens:
        tokens = list(_stemmer().stemWords(tokens))
    return tokens


@dataclass
class Hit:
    """A retrieved chunk, its fused score and the score from each retriever (if it found it)."""

    chunk: StoredChunk
    score: float
    similarity: float | None = None
    bm25: float | None = None
    lead: StoredChunk | None = None  # the document's first chunk (title and summary)

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


def rrf(
    rankings: Sequence[Sequence[str]], k: int = RRF_K, weights: Sequence[float] | None = None
) -> dict[str, float]:
    """Fuse rankings (ids best first) by reciprocal rank: sum of weight / (k + rank)."""
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return scores


class KeywordIndex:
    """BM25 over every chunk of the index, held in memory (rebuilt when the index changes)."""

    def __init__(self, chunks: Sequence[StoredChunk], stem: bool = True) -> None:
        import bm25s

        self.chunks = list(chunks)
        self.by_id = {c.id: c for c in self.chunks}
        self.stem = stem
        # The first chunk of each document: its title and summary, for quoted answers.
        firsts = (c for c in self.chunks if not c.metadata.get(CHUNK_INDEX))
        self.leads = {str(c.metadata.get(DOC_ID, c.id)): c for c in firsts}
        self._bm25 = bm25s.BM25()
        if self.chunks:
            tokens = [tokenize(c.text, stem) or ["_"] for c in self.chunks]
            self._bm25.index(tokens, show_progress=False)

    def search(self, query: str, n: int, filters: Filters) -> list[tuple[StoredChunk, float]]:
        """Return the `n` best chunks with a positive BM25 score, best first."""
        tokens = tokenize(query, self.stem)
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


def documents(ranked: Sequence[tuple[StoredChunk, float]], source: str) -> list[dict[str, Any]]:
    """Describe ranked chunks as MLflow RETRIEVER outputs: id, title, score and a snippet."""
    return [
        {
            "id": chunk.id,
            "page_content": chunk.text[:SNIPPET_CHARS],
            "metadata": {
                "doc_id": chunk.metadata.get(DOC_ID, chunk.id),
                "title": chunk.metadata.get("title"),
                source: score,
            },
        }
        for chunk, score in ranked
    ]


def hit_document(hit: Hit) -> dict[str, Any]:
    """Describe a fused hit as an MLflow document, with each retriever's score."""
    scores = {"score": hit.score, "similarity": hit.similarity, "bm25": hit.bm25}
    return {
        "id": hit.chunk.id,
        "page_content": hit.chunk.text[:DOCUMENT_CHARS],
        "metadata": {"doc_id": hit.doc_id, **{k: v for k, v in scores.items() if v is not None}},
    }


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


@dataclass(frozen=True)
class Tuning:
    """How hybrid retrieval weighs its evidence (each measured on the dev QA split)."""

    candidates: int = 30
    min_similarity: float = 0.37
    vector_weight: float = 1.5  # weight of the vector ranking in the fusion (BM25: 1)
    fuse_documents: bool = True  # fuse per document (best chunk of each), not per chunk
    deprecated_penalty: float = 0.5  # fused score factor for DEPRECATED modules
    stem: bool = False  # BM25 on stemmed tokens


def _by_document(ranked: Sequence[tuple[StoredChunk, float]]) -> list[tuple[StoredChunk, float]]:
    """Keep the best-ranked chunk of each document, in rank order."""
    seen: set[str] = set()
    kept = []
    for chunk, score in ranked:
        doc = str(chunk.metadata.get(DOC_ID, chunk.id))
        if doc not in seen:
            seen.add(doc)
            kept.append((chunk, score))
    return kept


class HybridRetriever:
    """Vector, keyword and hybrid search over one index."""

    def __init__(self, index: Index, embeddings: Embeddings, tuning: Tuning | None = None) -> None:
        self.index = index
        self.embeddings = embeddings
        self.tuning = tuning or Tuning()
        self._keyword = KeywordIndex([], self.tuning.stem)
        self._revision: str | None = None
        self._floor: float | None = None
        self.changed_at: float | None = None  # when the chunks served last changed (epoch s)
        self._lock = threading.Lock()

    @property
    def min_similarity(self) -> float:
        """Return the relevance floor: best cosine similarity below it means 'not found'.

        The floor `rag eval --calibrate` stored with the index, else the configured one.
        """
        return self.tuning.min_similarity if self._floor is None else self._floor

    @property
    def size(self) -> int:
        """Return the number of chunks the keyword index holds."""
        return len(self._keyword.chunks)

    def refresh(self) -> bool:
        """Rebuild the keyword index if the collection changed; return True if it did."""
        revision = self.index.revision()
        if revision == self._revision:
            return False
        keyword = KeywordIndex(list(self.index.chunks()), self.tuning.stem)
        floor = self.index.relevance_floor()
        with self._lock:
            self._keyword, self._revision, self._floor = keyword, revision, floor
            self.changed_at = self.index.changed_at()
        # The keyword index holds a few small objects per chunk (about 2 KB per chunk in all),
        # none in reference cycles: the collector's full passes would walk every one of them in
        # the middle of queries (hybrid p99 at 100k chunks, bench/rag_query.py). Move what is
        # alive now out of its reach; what is freed later is freed by refcount as ever.
        gc.collect()
        gc.freeze()
        log.info("keyword index loaded", chunks=len(keyword.chunks), revision=revision, floor=floor)
        return True

    def vector(self, query: str, n: int, filters: Filters) -> list[tuple[StoredChunk, float]]:
        """Return the `n` nearest chunks by cosine similarity."""
        if not self._keyword.chunks:  # nothing ingested (the keyword index mirrors the collection)
            return []
        embedding = self.embeddings.embed_query(query)
        return self.index.query(embedding, n, chroma_where(filters), known=self._keyword.by_id)

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
        n = max(self.tuning.candidates, k * 4)
        inputs = {"query": query, "k": k, "filters": filters, "mode": mode}
        with stage("retrieve", "RETRIEVER", inputs, candidates=n, mode=mode) as step:
            vector = self.vector(query, n, filters) if mode != "bm25" or floor else []
            keyword = self.keyword(query, n, filters) if mode != "vector" else []
            step.output(
                [*documents(vector, "vector"), *documents(keyword, "bm25")],
                vector_hits=len(vector),
                bm25_hits=len(keyword),
            )
        with stage("fuse", "RERANKER", {"query": query, "k": k}, rrf_k=RRF_K) as step:
            retrieval = self._fuse(vector, keyword, k, mode, floor)
            step.output(
                [hit_document(hit) for hit in retrieval.hits],
                found=retrieval.found,
                best_similarity=retrieval.best_similarity,
            )
        return retrieval

    def _fuse(
        self,
        vector: list[tuple[StoredChunk, float]],
        keyword: list[tuple[StoredChunk, float]],
        k: int,
        mode: str,
        floor: bool,
    ) -> Retrieval:
        """Apply the relevance floor, fuse the rankings by reciprocal rank and keep `k`."""
        tuning = self.tuning
        best = max((s for _, s in vector), default=None)
        if floor and (best is None or best < self.min_similarity):
            return Retrieval(best_similarity=best, found=False)
        similarity = {c.id: s for c, s in vector}
        bm25 = {c.id: s for c, s in keyword}
        if tuning.fuse_documents:
            vector, keyword = _by_document(vector), _by_document(keyword)
        rankings = {"vector": [vector], "bm25": [keyword]}.get(mode, [vector, keyword])
        weights = [tuning.vector_weight, 1.0] if mode == "hybrid" else [1.0]
        chunks: dict[str, StoredChunk] = {}
        keys: list[list[str]] = []
        for ranked in rankings:
            keys.append([])
            for chunk, _ in ranked:
                key = (
                    str(chunk.metadata.get(DOC_ID, chunk.id)) if tuning.fuse_documents else chunk.id
                )
                chunks.setdefault(key, chunk)
                keys[-1].append(key)
        fused = rrf(keys, weights=weights)
        for key, chunk in chunks.items():
            if str(chunk.metadata.get("module", "")).split(".")[0] in DEPRECATED:
                fused[key] *= tuning.deprecated_penalty
        hits: list[Hit] = []
        seen: set[str] = set()
        for key in sorted(fused, key=lambda i: -fused[i]):
            chunk = chunks[key]
            hit = Hit(chunk, fused[key], similarity.get(chunk.id), bm25.get(chunk.id))
            hit.lead = self._keyword.leads.get(hit.doc_id)
            if hit.doc_id in seen:
                continue
            seen.add(hit.doc_id)
            hits.append(hit)
            if len(hits) == k:
                break
        return Retrieval(hits=hits, best_similarity=best, found=bool(hits))
