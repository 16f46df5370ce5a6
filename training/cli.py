"""`lakeserve train` (and `python -m training`): train a model from a config file."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from lakehouse.config import LakehouseSettings, TrackingSettings
from lakehouse.console import err, main_for, out
from lakehouse.tables import Lakehouse

app = typer.Typer(
    help="Train a model from a gold table, log it to MLflow and gate its promotion.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback(invoke_without_command=True)
def train(
    ctx: typer.Context,
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="Training config YAML.", dir_okay=False)
    ] = None,
    model_name: Annotated[
        str | None, typer.Option(help="Registered model name (overrides the config).")
    ] = None,
    table_version: Annotated[
        int | None, typer.Option(help="Pin the Delta version of the table.", min=0)
    ] = None,
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value: key.path=value (repeatable)."),
    ] = None,
    run_name: Annotated[str | None, typer.Option(help="MLflow run name.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train, evaluate, register; promote to the alias only if it beats the champion.

    Exit codes: 0 success, 2 bad config or arguments, 3 data problem, 4 tracking server
    unreachable, 1 anything else.
    """
    if ctx.invoked_subcommand is not None:
        return
    if config is None:
        raise typer.BadParameter("a training config file is required", param_hint="'--config'")
    # Heavy imports (MLflow, scikit-learn) only when training, so `--help` stays fast.
    from training.config import load_config
    from training.run import train as run_training
    from training.tracking import Tracker

    extra = list(overrides or [])
    if table_version is not None:
        extra.append(f"data.version={table_version}")
    settings = load_config(config, extra, model_name=model_name)
    lake = Lakehouse(LakehouseSettings())
    tracker = Tracker(TrackingSettings())
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    # stdout carries only our result (e.g. --json); MLflow prints run URLs there, so send
    # anything printed during the run to stderr.
    with (
        contextlib.redirect_stdout(sys.stderr),
        Progress(*columns, console=err, transient=True) as bar,
    ):
        task = bar.add_task("starting", total=None)
        result = run_training(
            settings,
            lake,
            tracker,
            run_name=run_name,
            step=lambda text: bar.update(task, description=text),
        )
    summary = {
        "run_id": result.run_id,
        "experiment_id": result.experiment_id,
        "model": result.model_name,
        "version": result.version,
        "alias": result.alias,
        "promoted": result.decision.promote,
        "reason": result.decision.reason,
        "metrics": result.metrics,
        "data": {"table": result.table, "version": result.table_version, "rows": result.rows},
        "tracking_uri": tracker.uri,
    }
    if as_json:
        out.print_json(json.dumps(summary))
        return
    verdict = (
        "[green]promoted[/green]" if result.decision.promote else "[yellow]not promoted[/yellow]"
    )
    out.print(
        f"{result.model_name} v{result.version} -> @{result.alias} ({verdict})\n"
        f"  {result.decision.reason}\n"
        f"  holdout: "
        + ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items())
        + f"\n  data: {result.table}@v{result.table_version} ({result.rows:,} rows)"
        f"\n  run: {result.run_id} in {tracker.uri}"
    )


def main() -> None:
    """Run `python -m training`."""
    main_for(app, "python -m training")
