"""The `lakeserve` command: one root that mounts each workload's sub-commands."""

from __future__ import annotations

import typer

from kernel.console import main_for
from lakehouse.cli import app as lake_app
from lakeserve.models_cli import app as models_app
from lakeserve.registry_cli import app as registry_app
from rag.chat.cli import chat_command
from rag.cli import app as rag_app
from serving.cli import serve_command
from training.cli import app as train_app
from training.monitor_cli import monitor_command

app = typer.Typer(
    name="lakeserve",
    help="Lakeserve: Delta lakehouse, MLflow training, model serving and RAG on Ray Serve.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(lake_app, name="lake")
app.add_typer(train_app, name="train")
app.add_typer(rag_app, name="rag")
app.add_typer(registry_app, name="registry")
app.add_typer(models_app, name="models")
app.command("serve")(serve_command)
app.command("chat")(chat_command)
app.command("monitor")(monitor_command)


def main() -> None:
    """Run the `lakeserve` console script."""
    main_for(app, "lakeserve")
