"""Retrieval and answer quality over the whole default corpus, and the relevance floor."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from rag.retrieval import HybridRetriever
from rag.service import open_retriever
from rag.settings import RagSettings
from tests.utils.cli import spawn
from tests.utils.platform import IndexEnv, clean_env, small_docs_home

pytestmark = pytest.mark.integration

QA = Path(__file__).parents[2] / "rag" / "qa"
# Measured 0.82 for hybrid (vector 0.82, BM25 0.72) on 115 questions. The floor sits below the
# measurement by about 8 questions' worth of misses, and above what BM25 alone reaches, so a
# broken fusion, tokenizer, chunker or embedding falls through it.
RECALL_AT_5_FLOOR = 0.75
# Task-phrased questions (rag/qa/tasks-test.jsonl, the held-out half), quoted answers: floors
# below what was measured (README, RAG quality), so a regression falls through them.
# Measured 2026-12-01: hybrid recall@5 0.333, answered 0.956, names a relevant API 0.356,
# off-topic refused 0.525 at the default floor (0.80 at the calibrated one, 0.464).
TASK_RECALL_AT_5_FLOOR = 0.28
TASK_ANSWERED_FLOOR = 0.85
TASK_NAMES_API_FLOOR = 0.30
OFF_TOPIC_REFUSED_FLOOR = 0.45


@pytest.fixture(scope="module")
def retriever(full_index: IndexEnv) -> HybridRetriever:
    env = full_index.env
    settings = RagSettings(
        home=full_index.home,
        chroma_url=env["LAKESERVE_CHROMA_URL"],
        rag_collection=env["LAKESERVE_RAG_COLLECTION"],
    )
    return open_retriever(settings)


def test_eval_cli_scores_every_mode_and_logs_to_mlflow(full_index: IndexEnv) -> None:
    result = spawn("rag", "eval", "--json", "--run-name", "quality-gate", env=full_index.env)
    assert result.code == 0, result.err[-3000:]
    scores = json.loads(result.out)

    assert set(scores) == {"hybrid", "vector", "bm25"}
    hybrid = scores["hybrid"]
    for metric in ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10"):
        assert hybrid[metric] >= scores["vector"][metric] - 0.01, metric
        assert hybrid[metric] >= scores["bm25"][metric] - 0.01, metric
    assert hybrid["recall@5"] >= RECALL_AT_5_FLOOR
    assert hybrid["recall@1"] <= hybrid["recall@5"] <= hybrid["recall@10"]

    mlflow.set_tracking_uri(f"sqlite:///{full_index.home / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["rag-eval"], output_format="list")
    run = next(r for r in runs if r.info.run_name == "quality-gate")
    assert run.data.metrics["hybrid_recall_at_5"] == hybrid["recall@5"]
    assert run.data.params["chunk_size"] == "800"
    assert run.data.params["questions"] == "115"


def test_off_topic_questions_fall_below_the_relevance_floor(retriever: HybridRetriever) -> None:
    questions = [json.loads(line)["question"] for line in (QA / "off-topic.jsonl").open()]
    found = [q for q in questions if retriever.search(q, 5).found]
    assert found == []


def test_documented_questions_clear_the_relevance_floor(retriever: HybridRetriever) -> None:
    questions = [json.loads(line)["question"] for line in (QA / "stdlib.jsonl").open()]
    missed = [q for q in questions if not retriever.search(q, 5).found]
    assert len(missed) <= len(questions) * 0.03, missed


def test_filters_restrict_every_retriever(retriever: HybridRetriever) -> None:
    for mode in ("hybrid", "vector", "bm25"):
        result = retriever.search("serialize to a string", 5, {"module": "json"}, mode, False)
        assert result.hits and {h.chunk.metadata["module"] for h in result.hits} == {"json"}


def test_task_phrased_answers_never_invent_and_refuse_off_topic(full_index: IndexEnv) -> None:
    # The held-out half of the task-phrased set and of the off-topic set; the default
    # (quoted) answers, the relevance floor in use.
    result = spawn(
        "rag", "eval", "--json", "--answers", "--run-name", "answer-gate",
        "--qa", str(QA / "tasks-test.jsonl"), "--off-topic", str(QA / "off-topic-test.jsonl"),
        env=full_index.env,
    )  # fmt: skip
    assert result.code == 0, result.err[-3000:]
    scores = json.loads(result.out)
    answers = scores["answers"]
    assert answers["invented_api_names"] == 0, answers["invented"]
    assert answers["invalid_citations"] == 0
    assert set(answers["modes"]) <= {"quoted", "not_found"}
    assert answers["answered"] >= TASK_ANSWERED_FLOOR
    assert answers["refused"] >= OFF_TOPIC_REFUSED_FLOOR
    assert answers["names_relevant_api"] >= TASK_NAMES_API_FLOOR
    assert scores["hybrid"]["recall@5"] >= TASK_RECALL_AT_5_FLOOR
    floor = scores["floor"]
    assert floor["stored"] is False and floor["in_use"] == pytest.approx(0.37)
    assert 0.0 < floor["floor"] < 1.0


def test_calibrated_floor_is_stored_with_the_index_and_used(tmp_path: Path) -> None:
    home = small_docs_home(tmp_path / "home")
    env = clean_env(LAKESERVE_HOME=str(home), LAKESERVE_RAG_COLLECTION="calibrated")
    assert spawn("rag", "ingest", "--executor", "local", env=env).code == 0
    on_topic, off_topic = tmp_path / "on.jsonl", tmp_path / "off.jsonl"
    on_topic.write_text(
        '{"question": "Serialize an object to a JSON string", "relevant": ["json.dumps"]}\n'
        '{"question": "Split a shell command line into words", "relevant": ["shlex.split"]}\n'
    )
    off_topic.write_text('{"question": "How do I bake sourdough bread?"}\n')
    args = ("--qa", str(on_topic), "--off-topic", str(off_topic), "--json")
    result = spawn("rag", "eval", "--calibrate", *args, env=env)
    assert result.code == 0, result.err[-3000:]
    floor = json.loads(result.out)["floor"]
    assert floor["stored"] is True and floor["answered"] == floor["refused"] == 1.0
    assert floor["in_use"] == floor["floor"] != 0.37
    settings = RagSettings(home=home, rag_collection="calibrated")
    assert open_retriever(settings).min_similarity == floor["floor"]
    assert not open_retriever(settings).search("How do I bake sourdough bread?", 5).found

    # As a gate: a question whose document the index cannot have scores 0 and fails it; the
    # two answerable ones (one found in the first five) pass a floor below their 0.5.
    gated = tmp_path / "gated.jsonl"
    gated.write_text('{"question": "Split a shell line into words", "relevant": ["no.such.doc"]}\n')
    below = spawn("rag", "eval", "--qa", str(gated), "--min-recall", "0.1", env=env)
    assert below.code == 9, below.err[-3000:]
    assert "hybrid recall@5 is 0.000 on gated.jsonl" in below.err
    assert "below the gate's 0.100" in below.err
    passed = spawn("rag", "eval", "--qa", str(on_topic), "--min-recall", "0.4", env=env)
    assert passed.code == 0, passed.err[-3000:]
