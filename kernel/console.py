"""Run a Typer app as a CLI: one place maps errors to exit codes and one-line messages."""

from __future__ import annotations

import sys

import structlog
import typer
from pydantic import ValidationError
from rich.console import Console

from kernel.errors import LakeserveError, invalid_config
from kernel.logs import configure_logging

# Results go to stdout (pipeable, e.g. --json); progress, logs and errors go to stderr.
out = Console()
err = Console(stderr=True)


def run(app: typer.Typer, args: list[str] | None = None, prog_name: str = "lakeserve") -> int:
    """Run `app` and return the process exit code; expected errors print one line, no traceback."""
    try:
        configure_logging()
        result = app(args=args, prog_name=prog_name, standalone_mode=False)
        return result if isinstance(result, int) else 0
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        return 130
    except typer.TyperException as exc:  # usage errors: unknown option, missing value...
        exc.show()  # type: ignore[attr-defined]
        return int(exc.exit_code)
    except ValidationError as exc:
        return _report(invalid_config(exc))
    except LakeserveError as exc:
        return _report(exc)
    except Exception as exc:
        structlog.get_logger("lakeserve").exception("unexpected error")
        err.print(f"error: unexpected {type(exc).__name__}: {exc}", markup=False, highlight=False)
        return 1


def _report(exc: LakeserveError) -> int:
    err.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
    return exc.exit_code


def main_for(app: typer.Typer, prog_name: str) -> None:
    """Entry point body: run the app and exit with its code."""
    sys.exit(run(app, prog_name=prog_name))
