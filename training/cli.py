"""`lakeserve train` (and `python -m training`): train a model from a config file."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from prometheus_client import Gauge
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from kernel.console import err, main_for, out
from kernel.jobs import job_run
from kernel.settings import TrackingSettings
from lakehouse.settings import LakehouseSettings
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
    sweep: Annotated[
        Path | None,
        typer.Option(
            help="Sweep file: a YAML list of {key.path: value} override sets; one is applied.",
            dir_okay=False,
        ),
    ] = None,
    sweep_index: Annotated[
        int | None,
        typer.Option(
            help="Which set of --sweep to apply (default: JOB_COMPLETION_INDEX, as set by an "
            "Indexed Kubernetes Job).",
            envvar="JOB_COMPLETION_INDEX",
            min=0,
        ),
    ] = None,
) -> None:
    """Train, evaluate, register; promote to the alias only if it beats the champion.

    Exit codes: 0 success, 2 bad config or arguments, 3 data problem, 4 tracking server
    unreachable, 1 anything else.
    """
    if ctx.invoked_subcommand is not None:
        return
    with job_run("train", model_name or (config.stem if config else "unknown")) as job:
        summary = _train(config, model_name, table_version, overrides, run_name, sweep, sweep_index)
        job.name = summary["model"]
        job.make(
            Gauge, "lakeserve_training_promoted", "1 when the run's version took the alias."
        ).labels().set(1 if summary["promoted"] else 0)
        holdout = job.make(
            Gauge, "lakeserve_training_holdout", "The run's holdout metrics.", ["metric"]
        )
        for metric, value in summary["metrics"].items():
            holdout.labels(metric).set(value)
    if as_json:
        out.print_json(json.dumps(summary))
        return
    verdict = "[green]promoted[/green]" if summary["promoted"] else "[yellow]not promoted[/yellow]"
    data = summary["data"]
    out.print(
        f"{summary['model']} v{summary['version']} -> @{summary['alias']} ({verdict})\n"
        f"  {summary['reason']}\n"
        f"  holdout: "
        + ", ".join(f"{k}={v:.4f}" for k, v in summary["metrics"].items())
        + f"\n  data: {data['table']}@v{data['version']} ({data['rows']:,} rows)"
        f"\n  run: {summary['run_id']} in {summary['tracking_uri']}"
    )


def _train(
    config: Path | None,
    model_name: str | None,
    table_version: int | None,
    overrides: list[str] | None,
    run_name: str | None,
    sweep: Path | None,
    sweep_index: int | None,
) -> dict[str, Any]:
    """Run one training and return its summary."""
    if config is None:
        raise typer.BadParameter("a training config file is required", param_hint="'--config'")
    # Heavy imports (MLflow, scikit-learn) only when training, so `--help` stays fast.
    from training.config import load_config
    from training.run import train as run_training
    from training.tracking import Tracker

    extra = list(overrides or [])
    if sweep is not None:
        chosen = sweep_overrides(sweep, sweep_index)
        extra += chosen
        run_name = run_name or f"sweep-{sweep_index}"
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
    return summary


def sweep_overrides(path: Path, index: int | None) -> list[str]:
    """Return the `key=value` overrides of one entry of a sweep file."""
    import yaml

    from kernel.errors import ConfigError

    if index is None:
        raise ConfigError("--sweep needs --sweep-index (or JOB_COMPLETION_INDEX)")
    try:
        entries = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read sweep file {path}: {exc}") from exc
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"sweep file {path} must be a YAML list of mappings")
    if index >= len(entries):
        raise ConfigError(f"sweep index {index} out of range: {path} has {len(entries)} entries")
    return [
        f"{key}={json.dumps(value)}" for key, value in entries[index].items()
    ]  # JSON values are YAML values


@app.command("submit")
def submit(
    config: Annotated[
        Path, typer.Option("--config", "-c", help="Training config YAML.", dir_okay=False)
    ],
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a config value: key.path=value (repeatable)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Job name (default: train-<config>-<UTC time>).")
    ] = None,
    namespace: Annotated[str, typer.Option(help="Namespace of the Job.")] = "lakeserve-jobs",
    image: Annotated[
        str, typer.Option(help="Container image.", envvar="LAKESERVE_IMAGE")
    ] = "ghcr.io/lakeserve/lakeserve:0.1.0",
    image_pull_policy: Annotated[
        str,
        typer.Option(help="Always, IfNotPresent (an image loaded into kind) or Never."),
    ] = "Always",
    cpu: Annotated[str, typer.Option(help="CPU request and limit.")] = "2",
    memory: Annotated[str, typer.Option(help="Memory request and limit.")] = "4Gi",
    context: Annotated[str | None, typer.Option(help="kubeconfig context.")] = None,
    watch: Annotated[
        bool, typer.Option(help="Follow the Job to its end, streaming its logs.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Print the manifests for `kubectl create -f -` and stop.")
    ] = False,
) -> None:
    """Run training as a Kubernetes Job (the same `lakeserve train` entrypoint).

    The config is validated here first (exit 2); the Job fails fast on exit codes 2 and 3 and
    does not count evictions. With --watch the exit code is the training's, or 6 when its pod
    cannot start (image not pullable, missing Secret key).
    """
    from training.submit import JobSpec, Submitter, manifests, to_yaml

    spec = JobSpec(
        config=config,
        overrides=list(overrides or []),
        name=name,
        namespace=namespace,
        image=image,
        pull_policy=image_pull_policy,
        cpu=cpu,
        memory=memory,
    )
    objects = manifests(spec)
    if dry_run:
        sys.stdout.write(to_yaml(objects))
        return
    submitter = Submitter(namespace, context)
    created = submitter.create(objects)
    err.print(f"job {namespace}/{created} created", soft_wrap=True)
    if watch:
        code = submitter.follow(
            created, lambda line: out.print(line, markup=False, highlight=False, soft_wrap=True)
        )
        if code:
            raise typer.Exit(code)


def main() -> None:
    """Run `python -m training`."""
    main_for(app, "python -m training")
