"""`lakeserve lake ...` as users run it: output, JSON, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.utils.cli import invoke, spawn

pytestmark = pytest.mark.integration


def test_seed_then_show_lists_tables_with_versions_rows_and_schema(
    lake_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded = invoke(capsys, "lake", "seed", "--scale", "4000", "--seed", "9", "--modules", "json")
    assert seeded.code == 0, seeded.err
    assert "gold.trips" in seeded.out and "written" in seeded.out

    shown = invoke(capsys, "lake", "show", "--json")
    assert shown.code == 0
    listing = json.loads(shown.out)
    assert listing["root"] == str((lake_env / "lake").resolve())
    tables = {t["table"]: t for t in listing["tables"]}
    assert tables["bronze.trips"]["rows"] == 4000
    assert tables["bronze.trips"]["version"] == 0
    assert tables["gold.trips"]["schema"]["fare_amount"] == "double"
    assert tables["silver.trips"]["metadata"]["source"] == "bronze.trips@0"

    assert tables["gold.docs"]["metadata"]["source"] == "silver.docs@0"
    assert tables["bronze.docs"]["metadata"]["modules"] == "json"

    again = invoke(capsys, "lake", "seed", "--scale", "4000", "--seed", "9", "--modules", "json")
    assert again.code == 0
    assert again.out.count("up to date") == 7


def test_seed_only_builds_one_of_trips_and_docs(
    lake_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seeded = invoke(capsys, "lake", "seed", "--only", "docs", "--modules", "json")
    assert seeded.code == 0, seeded.err
    tables = {
        t["table"] for t in json.loads(invoke(capsys, "lake", "show", "--json").out)["tables"]
    }
    assert tables == {"bronze.docs", "silver.docs", "gold.docs"}
    wrong = invoke(capsys, "lake", "seed", "--only", "models")
    assert wrong.code == 2
    assert wrong.err.strip() == "error: --only must be 'trips' or 'docs', got 'models'"


def test_show_on_an_empty_lakehouse_says_how_to_fill_it(
    lake_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shown = invoke(capsys, "lake", "show")
    assert shown.code == 0
    assert "run `lakeserve lake seed`" in shown.out


def test_seed_with_scale_out_of_range_exits_2_with_one_line(
    lake_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = invoke(capsys, "lake", "seed", "--scale", "10")
    assert result.code == 2
    assert result.err.strip() == "error: --scale must be between 1,000 and 50,000,000, got 10"


def test_invalid_setting_in_the_environment_exits_2(
    lake_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKESERVE_S3_ALLOW_HTTP", "perhaps")
    result = invoke(capsys, "lake", "show")
    assert result.code == 2
    assert "s3_allow_http" in result.err and "Traceback" not in result.err


def test_every_subcommand_has_help(lake_env: Path) -> None:
    for command in ([], ["lake"], ["lake", "seed"], ["lake", "show"], ["train"]):
        result = spawn(*command, "--help")
        assert result.code == 0, (command, result.err)
        assert "Usage:" in result.out
