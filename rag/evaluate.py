"""Evaluation over QA sets: retrieval (recall@k, MRR, nDCG@10 per mode), the relevance floor
calibrated on on-topic and off-topic questions, and the answers themselves."""

from __future__ import annotations

import importlib
import itertools
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel.errors import DataError
from lakehouse.docs.extract import SKIP
from rag.answer import markers
from rag.chain import RagChain
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


def load_questions(path: Path) -> list[str]:
    """Read a JSONL file of {question} lines (off-topic sets: no relevant documents)."""
    try:
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        questions = [str(row["question"]) for row in rows]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f'cannot read {path}: expected {{"question": ...}} lines ({exc})') from exc
    if not questions:
        raise DataError(f"question file {path} has no questions")
    return questions


def best_similarities(retriever: HybridRetriever, questions: Sequence[str]) -> list[float]:
    """Return each question's best cosine similarity to any chunk (what the floor compares)."""
    scores = []
    for question in questions:
        best = retriever.search(question, 1, mode="vector", floor=False).best_similarity
        scores.append(best if best is not None else -1.0)
    return scores


def calibrate(on_topic: Sequence[float], off_topic: Sequence[float]) -> dict[str, float]:
    """Pick the relevance floor that best separates on-topic from off-topic best similarities.

    The floor maximises balanced accuracy (answered share of on-topic questions plus refused
    share of off-topic ones); among equals, the middle of the widest gap between scores.
    """
    edges = [-1.0, *sorted({*on_topic, *off_topic}), 1.0]
    options = []
    for low, high in itertools.pairwise(edges):
        floor = (low + high) / 2
        answered = sum(s >= floor for s in on_topic) / len(on_topic)
        refused = sum(s < floor for s in off_topic) / len(off_topic)
        options.append((answered + refused, high - low, floor, answered, refused))
    _, _, floor, answered, refused = max(options)
    return {"floor": round(floor, 4), "answered": round(answered, 4), "refused": round(refused, 4)}


# Dotted names outside URLs and e-mail addresses (json.org in "http://json.org" is no API).
_DOTTED = re.compile(r"(?<![\w./@])([a-z_][a-z0-9_]*(?:\.[A-Za-z_]\w*)+)(?![\w/@])")


_FILES = frozenset(
    [
        "py",
        "pyc",
        "pyi",
        "txt",
        "cfg",
        "ini",
        "json",
        "toml",
        "html",
        "xml",
        "csv",
        "gz",
        "zip",
        "tar",
    ]
)


def resolves(name: str) -> bool:
    """Return True when a dotted stdlib name exists (module prefix imported, rest by getattr)."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        if any(p in SKIP for p in parts[:cut]):
            return True  # never imported here (side effects); not judged
        try:
            target: object = importlib.import_module(module_name)
        except Exception:
            continue
        try:
            for attr in parts[cut:]:
                target = getattr(target, attr)
        except AttributeError:
            return False
        return True
    return False


def invented_names(answer: str) -> list[str]:
    """Return the dotted names of an answer that start with a stdlib module and do not exist."""
    names = {n.rstrip(".") for n in _DOTTED.findall(answer)}
    # Private parts (builtins._) are implementation details, not API claims.
    claims = [
        n
        for n in names
        if n.split(".")[0] in sys.stdlib_module_names
        and not any(p.startswith("_") for p in n.split(".")[1:])
        and n.rsplit(".", 1)[1] not in _FILES  # plistlib.py is a file name
    ]
    return sorted(n for n in claims if not resolves(n))


def citations_valid(answer: str, sources: int) -> bool:
    """Return True when every [n] marker of an answer points at one of its sources."""
    return all(1 <= n <= sources for n in markers(answer))


async def evaluate_answers(
    chain: RagChain,
    questions: Sequence[Question],
    off_topic: Sequence[str],
    on_question: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Answer every question with the chain and score the answers (see README, RAG quality)."""
    answered = relevant = invalid = 0
    invented: list[str] = []
    modes: dict[str, int] = {}
    for q in questions:
        answer = await chain.answer(q.question)
        answered += answer.found
        relevant += answer.found and any(doc in answer.answer for doc in q.relevant)
        invented += invented_names(answer.answer)
        invalid += not citations_valid(answer.answer, len(answer.citations))
        modes[answer.mode] = modes.get(answer.mode, 0) + 1
        if on_question:
            on_question()
    refused = 0
    for question in off_topic:
        refused += not (await chain.answer(question)).found
        if on_question:
            on_question()
    return {
        "answered": round(answered / len(questions), 4),
        "refused": round(refused / len(off_topic), 4),
        "names_relevant_api": round(relevant / len(questions), 4),
        "invented_api_names": len(invented),
        "invalid_citations": invalid,
        "invented": sorted(set(invented)),
        "modes": modes,
    }
