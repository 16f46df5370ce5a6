"""`lakeserve lake sql`: DuckDB over real Delta tables, read-only, pinned versions, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lakehouse.seed import GOLD, seed_trips
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from tests.utils.cli import spawn
from tests.utils.platform import clean_env


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("sql")
    lake = Lakehouse(LakehouseSettings(home=home))
    seed_trips(lake, 6_000, seed=1)
    seed_trips(lake, 8_000, seed=2, force=True)  # gold.trips version 1
    return home


def sql(home: Path, *args: str) -> tuple[int, str, str]:
    result = spawn("lake", "sql", *args, env=clean_env(LAKESERVE_HOME=str(home)))
    return result.code, result.out, result.err


def test_a_select_answers_what_the_delta_table_holds(home: Path) -> None:
    lake = Lakehouse(LakehouseSettings(home=home))
    gold = lake.read(GOLD)
    code, out, err = sql(
        home,
        "SELECT pickup_borough, count(*) AS n FROM gold.trips GROUP BY 1 ORDER BY n DESC",
        "--json",
    )
    assert code == 0, err
    counts = {r["pickup_borough"]: r["n"] for r in json.loads(out)}
    expected = gold.group_by("pickup_borough").aggregate([("pickup_borough", "count")])
    assert counts == dict(
        zip(
            expected.column("pickup_borough").to_pylist(),
            expected.column("pickup_borough_count").to_pylist(),
            strict=True,
        )
    )


def test_at_pins_a_table_version(home: Path) -> None:
    lake = Lakehouse(LakehouseSettings(home=home))
    first = lake.read(GOLD, version=0).num_rows
    latest = lake.read(GOLD).num_rows
    assert first != latest
    for pin, rows in ((["--at", "gold.trips=0"], first), ([], latest)):
        code, out, err = sql(home, "SELECT count(*) AS n FROM gold.trips", "--json", *pin)
        assert code == 0, err
        assert json.loads(out) == [{"n": rows}]


def test_tables_print_as_a_table_with_a_row_limit(home: Path) -> None:
    code, out, err = sql(home, "SELECT trip_id FROM silver.trips", "--limit", "3")
    assert code == 0, err
    assert "trip_id" in out
    assert "rows, 3 shown (--limit)" in err


@pytest.mark.parametrize(
    ("statement", "code", "message"),
    [
        ("DROP VIEW gold.trips", 2, "read-only: only SELECT is allowed, got DROP"),
        ("COPY (SELECT 1) TO '/tmp/x.csv'", 2, "read-only: only SELECT is allowed, got COPY"),
        ("SELECT 1; SELECT 2", 2, "one statement at a time, got 2"),
        ("SELECT * FROM read_csv('/etc/passwd')", 2, "Permission Error"),
        ("SELECT * FROM gold.nope", 2, "tables: bronze.trips"),
        ("SELEC 1", 2, "invalid SQL"),
        ("", 2, "no SQL given"),
    ],
)
def test_anything_but_one_select_is_refused_with_exit_2(
    home: Path, statement: str, code: int, message: str
) -> None:
    got, _, err = sql(home, statement)
    assert got == code, err
    assert message in err
    assert "Traceback" not in err


def test_a_missing_version_is_exit_3_and_a_bad_pin_exit_2(home: Path) -> None:
    code, _, err = sql(home, "SELECT 1", "--at", "gold.trips=99")
    assert code == 3 and "no version 99" in err, err
    code, _, err = sql(home, "SELECT 1", "--at", "gold.trips")
    assert code == 2 and "expected <layer>.<name>=<version>" in err, err
