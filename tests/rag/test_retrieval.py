"""Retrieval pieces: tokenizer, reciprocal rank fusion, filters, BM25 and the metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kernel.errors import DataError, InvalidInput
from rag.evaluate import load_qa, ndcg_at, recall_at, reciprocal_rank, score
from rag.retrieval import KeywordIndex, check_filters, chroma_where, rrf, tokenize
from rag.store import DOC_ID, StoredChunk


def test_tokenize_lowercases_drops_stopwords_and_splits_snake_case() -> None:
    assert tokenize("How do I use json.dumps with sort_keys?", stem=False) == [
        "use", "json", "dumps", "sort_keys", "sort", "keys"
    ]  # fmt: skip


def test_tokenize_splits_camel_case_and_stems_so_tasks_meet_names() -> None:
    question = tokenize("Is there a way to make temporary directories?")
    name = tokenize("tempfile.TemporaryDirectory(suffix=None)")
    assert question == ["make", "temporari", "directori"]
    assert {"temporari", "directori"} <= set(name)
    assert tokenize("HTTPServer") == ["httpserver", "http", "server"]


def test_rrf_rewards_agreement_between_rankings() -> None:
    fused = rrf([["a", "b", "c"], ["b", "d"]])
    assert sorted(fused, key=lambda i: -fused[i]) == ["b", "a", "d", "c"]
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)


def test_filters_translate_to_chroma_where() -> None:
    assert chroma_where({}) is None
    assert chroma_where({"module": "json"}) == {"module": "json"}
    assert chroma_where({"module": ["json", "csv"], "kind": "function"}) == {
        "$and": [{"module": {"$in": ["json", "csv"]}}, {"kind": "function"}]
    }


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"a-b": "x"}, "filters: invalid field name 'a-b'"),
        ({"module": []}, "filters.module: expected a string, number, boolean or a non-empty list"),
        ({"module": {"$ne": 1}}, "filters.module: expected a string, number, boolean"),
    ],
)
def test_bad_filters_are_invalid_input(filters: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        check_filters(filters)
    assert str(caught.value).startswith(message)


def chunk(doc_id: str, text: str, module: str) -> StoredChunk:
    return StoredChunk(f"{doc_id}::0000", text, {"doc_id": doc_id, "module": module})


def test_keyword_index_ranks_by_bm25_and_applies_filters() -> None:
    index = KeywordIndex(
        [
            chunk("json.dumps", "json.dumps serialize obj to a JSON formatted str", "json"),
            chunk("pickle.dumps", "pickle.dumps return the pickled representation", "pickle"),
            chunk("csv.writer", "csv writer object for rows", "csv"),
        ]
    )
    assert [c.id for c, _ in index.search("serialize json", 5, {})] == ["json.dumps::0000"]
    ranked = [c.id for c, _ in index.search("dumps", 5, {})]
    assert set(ranked) == {"json.dumps::0000", "pickle.dumps::0000"}
    only_pickle = index.search("dumps", 5, {"module": "pickle"})
    assert [c.id for c, _ in only_pickle] == ["pickle.dumps::0000"]
    assert index.search("the of", 5, {}) == []


def test_metrics_on_a_hand_checked_ranking() -> None:
    relevant = frozenset({"b", "d"})
    ranked = ["a", "b", "c", "d"]
    assert recall_at(ranked, relevant, 1) == 0.0
    assert recall_at(ranked, relevant, 2) == 0.5
    assert recall_at(ranked, relevant, 10) == 1.0
    assert reciprocal_rank(ranked, relevant) == 0.5
    # DCG = 1/log2(3) + 1/log2(5); ideal = 1 + 1/log2(3)
    assert ndcg_at(ranked, relevant, 10) == pytest.approx((0.6309298 + 0.4306766) / 1.6309298)
    assert reciprocal_rank(["x"], relevant) == 0.0


def test_score_averages_over_questions(tmp_path: Path) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text(
        json.dumps({"question": "q1", "relevant": ["a"]})
        + "\n\n"
        + json.dumps({"question": "q2", "relevant": ["z"]})
        + "\n"
    )
    questions = load_qa(qa)
    scores = score([["a", "b"], ["b", "c"]], questions)
    assert scores["recall@1"] == 0.5
    assert scores["mrr"] == 0.5
    assert scores["ndcg@10"] == 0.5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": "q"}\n', 'qa.jsonl:1: expected {"question": ..., "relevant": [...]}'),
        ('{"question": "q", "relevant": []}\n', "qa.jsonl:1: relevant must be a non-empty list"),
        ("not json\n", 'qa.jsonl:1: expected {"question"'),
        ("\n", "has no questions"),
    ],
)
def test_bad_qa_files_are_data_errors(tmp_path: Path, content: str, message: str) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text(content)
    with pytest.raises(DataError) as caught:
        load_qa(qa)
    assert message in str(caught.value)


def test_committed_qa_set_is_large_and_varied() -> None:
    questions = load_qa(Path(__file__).parents[2] / "rag" / "qa" / "stdlib.jsonl")
    assert len(questions) >= 60
    assert len({q.question for q in questions}) == len(questions)
    modules = {doc.split(".")[0] for q in questions for doc in q.relevant}
    assert len(modules) >= 30


def test_vector_query_from_memory_matches_chroma_and_reads_what_memory_lacks(
    tmp_path: Path,
) -> None:
    """The id-only query (text and metadata from the keyword index's chunks) answers exactly
    what the full query does; chunks written after the memory copy was taken are read."""
    from rag.settings import RagSettings
    from rag.store import Index

    index = Index.open(RagSettings(home=tmp_path, rag_collection="query"), create=True)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(40, 8))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"c{i}" for i in range(40)]
    index.upsert(
        ids, vectors.tolist(), [f"text {i}" for i in ids],
        [{DOC_ID: f"d{i // 2}", "module": "m"} for i in range(40)],
    )  # fmt: skip
    query = vectors[3] + 0.1 * vectors[7]
    full = index.query(query.tolist(), 10, None)
    memory = {c.id: c for c in index.chunks() if c.id not in {full[0][0].id, full[4][0].id}}
    assert len(memory) == 38
    fast = index.query(query.tolist(), 10, None, known=memory)
    assert [(c.id, c.text, c.metadata) for c, _ in fast] == [
        (c.id, c.text, c.metadata) for c, _ in full
    ]
    assert [s for _, s in fast] == pytest.approx([s for _, s in full])
    assert full[0][0].id == "c3"
