"""Run the `lakeserve` CLI in-process or as a real subprocess, capturing exit code and output."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from kernel.console import run
from lakeserve.cli import app
from tests.utils.processes import BIN


@dataclass(frozen=True)
class Result:
    """Exit code and captured streams of one CLI invocation."""

    code: int
    out: str
    err: str


def invoke(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    """Run `lakeserve ARGS` in this process (fast; same code path as the console script)."""
    capsys.readouterr()
    code = run(app, list(args))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def spawn(*args: str, env: dict[str, str] | None = None, module: bool = False) -> Result:
    """Run `lakeserve ARGS` (or `python -m training ARGS`) as a real process."""
    command = (
        [sys.executable, "-m", "training", *args] if module else [str(BIN / "lakeserve"), *args]
    )
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    return Result(done.returncode, done.stdout, done.stderr)
