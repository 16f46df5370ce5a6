"""`lakeserve rag`: ingest a gold table into the index, evaluate retrieval, ask a question."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from prometheus_client import Gauge
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from kernel.console import err, out
from kernel.errors import ConfigError, GateFailed
from kernel.jobs import JobMetrics, job_run
from kernel.settings import RaySettings, TrackingSettings
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse, TableRef
from rag.settings import RagSettings

if TYPE_CHECKING:
    from rag.ingest import IngestSummary

app = typer.Typer(
    help="Retrieval-augmented generation over lakehouse documents.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
DEFAULT_QA = Path(__file__).with_name("qa") / "stdlib.jsonl"
GATE_METRIC = "recall@5"  # what `rag eval --min-recall` gates on, in hybrid mode


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


@app.command("ingest")
def ingest_command(
    table: Annotated[str, typer.Option(help="Gold table with the documents.")] = "gold.docs",
    version: Annotated[int | None, typer.Option(help="Table version (latest if unset).")] = None,
    id_column: Annotated[str, typer.Option(help="Unique document id column.")] = "doc_id",
    text_columns: Annotated[
        str, typer.Option(help="Columns joined into the document text (comma-separated).")
    ] = "text",
    title_column: Annotated[
        str, typer.Option(help="Column put before every chunk ('' for none).")
    ] = "title",
    metadata_columns: Annotated[
        str, typer.Option(help="Columns kept as chunk metadata, usable in filters.")
    ] = "title,kind,module,source,updated_at",
    hash_column: Annotated[
        str, typer.Option(help="Content hash column ('' to hash the text).")
    ] = "content_hash",
    executor: Annotated[
        str, typer.Option(help="Embed with 'ray' (Ray Data actor pool) or 'local' (in process).")
    ] = "ray",
    write_batch: Annotated[int, typer.Option(help="Chunks per write.", min=1)] = 256,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Sync the index with a gold table: embed new and changed chunks, delete stale ones.

    Re-runs write nothing when nothing changed; a run killed midway is completed by the next.
    One ingest per collection at a time. Exit codes: 2 bad arguments or settings, 3 table
    problem, 5 Chroma unreachable, 7 another ingest is writing the collection.
    """
    from rag.ingest import ColumnMapping, ingest

    settings = RagSettings()
    with job_run("ingest", settings.rag_collection) as job:
        if executor not in ("ray", "local"):
            raise ConfigError(f"--executor must be 'ray' or 'local', got {executor!r}")
        ref = TableRef.parse(table)
        mapping = ColumnMapping(
            id=id_column,
            text=_names(text_columns),
            title=title_column or None,
            metadata=_names(metadata_columns),
            content_hash=hash_column or None,
        )
        if not mapping.text:
            raise ConfigError("--text-columns needs at least one column")
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("chunks"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=err, transient=False) as bar:
            task = bar.add_task("planning", total=None)
            summary = ingest(
                Lakehouse(LakehouseSettings()),
                ref,
                settings,
                mapping,
                version=version,
                executor=executor,
                ray_settings=RaySettings(),
                write_batch=write_batch,
                on_plan=lambda n: bar.update(task, description="embedding", total=n),
                on_progress=lambda n: bar.advance(task, n),
            )
        record(job, summary)
    if as_json:
        out.print_json(json.dumps(summary.as_dict()))
        return
    out.print(
        f"{summary.table}@{summary.table_version} -> {summary.collection} "
        f"({settings.chroma_target}): {summary.added} added, {summary.updated} updated, "
        f"{summary.deleted} deleted, {summary.unchanged} unchanged documents; "
        f"{summary.chunks_written} chunks written, {summary.chunks_deleted} deleted, "
        f"{summary.chunks_total} in the index; {summary.chunks_per_s} chunks/s",
        soft_wrap=True,
    )


def record(job: JobMetrics, summary: IngestSummary) -> None:
    """Add what the run did to its pushed metrics."""
    chunks = job.make(Gauge, "lakeserve_rag_ingest_chunks", "Chunks by outcome.", ["outcome"])
    for outcome in ("written", "deleted", "total"):
        chunks.labels(outcome).set(getattr(summary, f"chunks_{outcome}"))
    if summary.changed_at is not None:
        job.make(
            Gauge,
            "lakeserve_rag_ingest_changed_timestamp_seconds",
            "When the collection's chunks last changed, as the run left them, epoch s.",
        ).labels().set(summary.changed_at)


DEFAULT_OFF_TOPIC = Path(__file__).with_name("qa") / "off-topic-dev.jsonl"


@app.command("eval")
def eval_command(
    qa: Annotated[
        Path, typer.Option(help="QA set, JSONL: {question, relevant: [doc_id...]}.", dir_okay=False)
    ] = DEFAULT_QA,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    run_name: Annotated[str | None, typer.Option(help="MLflow run name.")] = None,
    answers: Annotated[
        bool, typer.Option(help="Also answer every question and score the answers.")
    ] = False,
    off_topic: Annotated[
        Path,
        typer.Option(
            help="Off-topic questions, JSONL {question}: must be refused.", dir_okay=False
        ),
    ] = DEFAULT_OFF_TOPIC,
    calibrate: Annotated[
        bool,
        typer.Option(help="Store the relevance floor measured on QA and off-topic with the index."),
    ] = False,
    min_recall: Annotated[
        float | None,
        typer.Option(
            help=f"Gate: exit 9 when hybrid {GATE_METRIC} is below this (after logging the run).",
            min=0.0,
            max=1.0,
        ),
    ] = None,
) -> None:
    """Score vector, BM25 and hybrid retrieval on a QA set; log the run to MLflow.

    With --answers (or --calibrate) it also measures the relevance floor that separates the QA
    set from the off-topic questions; --calibrate stores it with the index, where servers pick
    it up. With --answers the answers are scored too (answered and refused shares, relevant
    API named, invented API names, citation validity).
    """
    from rag.chain import RagChain
    from rag.evaluate import best_similarities, evaluate, evaluate_answers, load_qa, load_questions
    from rag.evaluate import calibrate as calibrate_floor
    from rag.llm import chat_model
    from rag.service import open_retriever

    questions = load_qa(qa)
    refusals = load_questions(off_topic) if answers or calibrate else []
    settings = RagSettings()
    retriever = open_retriever(settings)
    with Progress(
        TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task("eval", total=len(questions))
        results: dict[str, Any] = evaluate(
            retriever, questions, on_question=lambda: bar.advance(task)
        )
        if refusals:
            on = best_similarities(retriever, [q.question for q in questions])
            floor = calibrate_floor(on, best_similarities(retriever, refusals))
            if calibrate:
                retriever.index.set_relevance_floor(floor["floor"])
                retriever.refresh()
            results["floor"] = {**floor, "in_use": retriever.min_similarity, "stored": calibrate}
        if answers:
            bar.update(task, total=len(questions) * 2 + len(refusals), description="answering")
            llm = chat_model(settings) if settings.generates else None
            chain = RagChain(retriever, llm, k=settings.rag_k, max_tokens=settings.llm_max_tokens)
            results["answers"] = asyncio.run(
                evaluate_answers(chain, questions, refusals, lambda: bar.advance(task))
            )
    _log_eval(settings, qa, len(questions), retriever.size, results, run_name)
    if as_json:
        out.print_json(json.dumps(results))
    else:
        _print_eval(results, qa, len(questions))
    recall = results["hybrid"][GATE_METRIC]
    if min_recall is not None and recall < min_recall:
        raise GateFailed(
            f"hybrid {GATE_METRIC} is {recall:.3f} on {qa.name} ({retriever.size:,} chunks), "
            f"below the gate's {min_recall:.3f}"
        )


def _print_eval(results: dict[str, Any], qa: Path, questions: int) -> None:
    from rag.retrieval import MODES

    table = Table(title=f"Retrieval on {qa.name} ({questions} questions)")
    metrics = list(results["hybrid"])
    table.add_column("mode")
    for name in metrics:
        table.add_column(name, justify="right")
    for mode in MODES:
        table.add_row(mode, *(f"{results[mode][m]:.3f}" for m in metrics))
    out.print(table)
    for section in ("floor", "answers"):
        if section in results:
            shown = {k: v for k, v in results[section].items() if k != "invented"}
            out.print(f"{section}: " + ", ".join(f"{k}={v}" for k, v in shown.items()))


def _log_eval(
    settings: RagSettings,
    qa: Path,
    questions: int,
    chunks: int,
    results: dict[str, Any],
    run_name: str | None,
) -> None:
    import mlflow

    from kernel.tracking import TrackingStore

    store = TrackingStore(TrackingSettings())
    store.connect()
    experiment = store.experiment("rag-eval")
    with mlflow.start_run(experiment_id=experiment, run_name=run_name):
        mlflow.log_params(
            {
                "qa_file": qa.name,
                "questions": questions,
                "collection": settings.rag_collection,
                "chunks": chunks,
                "embedding_model": settings.embedding_model,
                "chunk_size": settings.chunk_size,
                "chunk_overlap": settings.chunk_overlap,
                "candidates": settings.rag_candidates,
                "vector_weight": settings.rag_vector_weight,
                "fuse_documents": settings.rag_fuse_documents,
                "deprecated_penalty": settings.rag_deprecated_penalty,
                "stem": settings.rag_stem,
                "answers": "generated" if settings.generates else "quoted",
                "k": 10,
            }
        )
        for section, values in results.items():
            mlflow.log_metrics(
                {
                    f"{section}_{name.replace('@', '_at_')}": float(value)
                    for name, value in values.items()
                    if isinstance(value, int | float)
                }
            )
        mlflow.log_dict(results, "retrieval_metrics.json")


@app.command("query")
def query_command(
    question: Annotated[str, typer.Argument(help="The question.")],
    k: Annotated[int | None, typer.Option(help="Sources to retrieve.", min=1, max=50)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Answer one question in this process (no server), with its sources."""
    from rag.service import open_chain

    chain = open_chain(RagSettings())
    answer = asyncio.run(chain.answer(question, k=k))
    if as_json:
        out.print_json(json.dumps(answer.as_dict()))
        return
    out.print(answer.answer, markup=False)
    for c in answer.citations:
        out.print(f"[{c.number}] {c.doc_id}: {c.title}", markup=False, soft_wrap=True)
