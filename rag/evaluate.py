"""Retrieval evaluation over a QA set: recall@k, MRR and nDCG@10 per retrieval mode."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from kernel.errors import DataError
from rag.retrieval import MODES, HybridRetriever

CUTOFFS = (1, 5, 10)
DEPTH = 10


@dataclass(frozen=True)
class Question:
    """One QA line: a question and the documents that answer it."""

    question: str
    relevant: frozenset[str]


def load_qa(path: Path) -> list[Question]:
    """Read a JSONL QA file; every line needs a question and a non-empty relevant list."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read QA file {path}: {exc}") from exc
    questions: list[Question] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            question, relevant = row["question"], row["relevant"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f'{path}:{number}: expected {{"question": ..., "relevant": [...]}}'
            ) from exc
        if not isinstance(question, str) or not question.strip():
            raise DataError(f"{path}:{number}: question must be a non-empty string")
        if not isinstance(relevant, list) or not relevant:
            raise DataError(f"{path}:{number}: relevant must be a non-empty list of doc ids")
        questions.append(Question(question, frozenset(map(str, relevant))))
    if not questions:
        raise DataError(f"QA file {path} has no questions")
    return questions


def recall_at(ranked: Sequence[str], relevant: frozenset[str], k: int) -> float:
    """Share of the relevant documents found in the first `k`."""
    return len(relevant.intersection(ranked[:k])) / len(relevant)


def reciprocal_rank(ranked: Sequence[str], relevant: frozenset[str]) -> float:
    """1 / rank of the first relevant document (0 if none was retrieved)."""
    for rank, doc_id in enumerate(ranked, 1):
        if doc_id in relevant:
            return 1.0 / rank
    return 0.0


def ndcg_at(ranked: Sequence[str], relevant: frozenset[str], k: int) -> float:
    """Normalised discounted cumulative gain with binary relevance."""
    dcg = sum(1.0 / math.log2(rank + 1) for rank, d in enumerate(ranked[:k], 1) if d in relevant)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal


def score(rankings: Sequence[Sequence[str]], questions: Sequence[Question]) -> dict[str, float]:
    """Average each metric over the questions."""
    totals = {f"recall@{k}": 0.0 for k in CUTOFFS} | {"mrr": 0.0, f"ndcg@{DEPTH}": 0.0}
    for ranked, q in zip(rankings, questions, strict=True):
        for k in CUTOFFS:
            totals[f"recall@{k}"] += recall_at(ranked, q.relevant, k)
        totals["mrr"] += reciprocal_rank(ranked, q.relevant)
        totals[f"ndcg@{DEPTH}"] += ndcg_at(ranked, q.relevant, DEPTH)
    return {name: round(value / len(questions), 4) for name, value in totals.items()}


def evaluate(
    retriever: HybridRetriever,
    questions: Sequence[Question],
    on_question: Callable[[], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Rank documents for every question with each mode (no relevance floor) and score them."""
    rankings: dict[str, list[list[str]]] = {mode: [] for mode in MODES}
    for q in questions:
        for mode in MODES:
            result = retriever.search(q.question, DEPTH, mode=mode, floor=False)
            rankings[mode].append([hit.doc_id for hit in result.hits])
        if on_question:
            on_question()
    return {mode: score(rankings[mode], questions) for mode in MODES}
