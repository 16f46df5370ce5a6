"""The import contracts of pyproject.toml (import-linter): kept by the code, broken by a plant."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.utils.processes import BIN

ROOT = Path(__file__).parents[1]
PACKAGES = ("lakeserve", "kernel", "lakehouse", "training", "serving", "rag")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """Run `lint-imports` on the packages under `tree` with the project's contracts."""
    return subprocess.run(
        [str(BIN / "lint-imports"), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={"PATH": str(BIN), "PYTHONPATH": str(tree)},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the packages and pyproject.toml, safe to plant imports in."""
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def plant(path: Path, line: str) -> None:
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_code_keeps_every_contract(tree: Path) -> None:
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # The kernel imports nothing of the repository.
        ("kernel/errors.py", "import lakehouse.tables", "Layers"),
        # The lakehouse is below every workload (the old root command lived here).
        ("lakehouse/tables.py", "import serving.host", "Layers"),
        # A workload never imports the entry point.
        ("training/run.py", "import lakeserve.cli", "Layers"),
        # Workloads never import each other (rag once borrowed training's tracker).
        ("rag/cli.py", "import training.tracking", "Workloads are independent"),
    ],
)
def test_a_planted_import_breaks_its_contract(
    tree: Path, module: str, line: str, broken: str
) -> None:
    plant(tree / module, line)
    result = lint_imports(tree)
    assert result.returncode == 1, result.stdout + result.stderr
    verdicts = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert any(line.startswith(broken) for line in verdicts), result.stdout
    assert module.removesuffix(".py").replace("/", ".") in result.stdout  # names the culprit
