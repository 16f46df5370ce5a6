"""`lakeserve models gate` and `wait`: the loop's gates, on a real registry and a fake clock."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from kernel.errors import ConfigError, WorkloadStuck
from lakehouse.seed import seed_trips
from lakehouse.settings import LakehouseSettings
from lakehouse.tables import Lakehouse
from lakeserve.models_cli import Sighting, Waited, serving_sighting, wait_until_served
from tests.utils.cli import invoke

CONFIGS = Path(__file__).parents[2] / "training" / "configs"


class Clock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def replay(
    answers: list[Sighting], target: str = "2", agree: int = 3, timeout_s: float = 60
) -> Waited:
    """Wait for `target` while serving gives `answers`, one per second of a fake clock."""
    answered = iter(answers)
    clock = Clock()
    return wait_until_served(
        lambda: target, lambda: next(answered), agree=agree, timeout_s=timeout_s, interval_s=1,
        clock=clock, sleep=clock.sleep,
    )  # fmt: skip


def test_wait_needs_answers_in_a_row_for_the_current_target() -> None:
    waited = replay(
        [Sighting("1", True), Sighting("2", False), Sighting("2", True), Sighting("1", True),
         Sighting("2", True), Sighting("2", True), Sighting("2", True)]
    )  # fmt: skip
    # A replica still on v1 (answer 4) breaks the streak: only answers 5-7 count.
    assert (waited.version, waited.agreed, waited.seconds) == ("2", 3, 6.0)


def test_wait_needs_every_replica_it_saw_lagging_to_catch_up() -> None:
    # Replica b answers v1 once; three v2 answers from a alone are not enough until b is
    # seen on v2.
    waited = replay(
        [Sighting("1", True, replica="b"), Sighting("2", True, replica="a"),
         Sighting("2", True, replica="a"), Sighting("2", True, replica="a"),
         Sighting("2", True, replica="a"), Sighting("2", True, replica="b")]
    )  # fmt: skip
    assert (waited.agreed, waited.replicas, waited.seconds) == (5, 2, 5.0)


def test_wait_names_the_replicas_that_lag_when_it_gives_up() -> None:
    answers = [Sighting("1", True, replica="b"), *[Sighting("2", True, replica="a")] * 20]
    with pytest.raises(WorkloadStuck, match=r"replicas not on v2: b$"):
        replay(answers, agree=2, timeout_s=8)


def test_wait_follows_a_promotion_made_while_waiting() -> None:
    targets = iter(["2", "2", "3", "3", "3", "3"])
    clock = Clock()
    waited = wait_until_served(
        lambda: next(targets), lambda: Sighting("2" if clock.now < 2 else "3", True),
        agree=3, timeout_s=60, interval_s=1, clock=clock, sleep=clock.sleep,
    )  # fmt: skip
    # Two answers for v2 do not count towards v3: three answers for v3 are needed.
    assert (waited.version, waited.seconds) == ("3", 4.0)


def test_wait_gives_up_saying_what_serving_last_answered() -> None:
    clock = Clock()
    with pytest.raises(WorkloadStuck, match=r"did not serve v5 within 10s.*ConnectError: refused"):
        wait_until_served(
            lambda: "5", lambda: Sighting(None, False, "ConnectError: refused"),
            agree=1, timeout_s=10, interval_s=2, clock=clock, sleep=clock.sleep,
        )  # fmt: skip
    assert clock.now <= 10


class _Serving(BaseHTTPRequestHandler):
    reply: tuple[int, Any] = (200, [])

    def do_GET(self) -> None:
        status, body = type(self).reply
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serving() -> Iterator[tuple[str, type[_Serving]]]:
    handler = type("Handler", (_Serving,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


def test_sighting_reads_the_model_following_the_alias(
    serving: tuple[str, type[_Serving]],
) -> None:
    url, handler = serving
    handler.reply = (200, [
        {"name": "fare", "alias": "challenger", "version": "9", "ready": True},
        {"name": "fare", "alias": "champion", "version": 4, "ready": True, "replica": "r1"},
    ])  # fmt: skip
    assert serving_sighting(url, "fare", "champion", None, 5) == Sighting("4", True, replica="r1")
    handler.reply = (503, {"error": "starting"})
    seen = serving_sighting(url, "fare", "champion", None, 5)
    assert (seen.version, seen.ready) == (None, False)
    assert seen.error is not None and seen.error.startswith("HTTP 503")


def test_sighting_fails_fast_on_a_refused_key_or_an_unhosted_model(
    serving: tuple[str, type[_Serving]],
) -> None:
    url, handler = serving
    handler.reply = (401, {"error": "missing or invalid API key"})
    with pytest.raises(ConfigError, match="refused the API key"):
        serving_sighting(url, "fare", "champion", "wrong", 5)
    handler.reply = (200, [{"name": "other", "alias": "champion", "version": "1", "ready": True}])
    with pytest.raises(ConfigError, match=r"hosts \['other@champion'\], not fare@champion"):
        serving_sighting(url, "fare", "champion", None, 5)


def test_wait_exits_6_when_nothing_answers(capsys: pytest.CaptureFixture[str]) -> None:
    result = invoke(
        capsys, "models", "wait", "--version", "3", "--url", "http://127.0.0.1:9",
        "--timeout", "1", "--interval", "0.5",
    )  # fmt: skip
    assert result.code == 6, result.err
    assert "did not serve v3 within 1s" in result.err


@pytest.mark.integration
def test_gate_passes_only_for_the_run_whose_candidate_holds_the_alias(
    lake_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed_trips(Lakehouse(LakehouseSettings()), 3_000, seed=3)
    ridge = str(CONFIGS / "fare-ridge.yaml")
    first = invoke(capsys, "train", "--config", ridge, "--run-name", "first", "--json")
    again = invoke(capsys, "train", "--config", ridge, "--run-name", "again", "--json")
    assert (first.code, again.code) == (0, 0), first.err + again.err
    assert json.loads(first.out)["promoted"] and not json.loads(again.out)["promoted"]

    passed = invoke(capsys, "models", "gate", "--run-name", "first", "--json")
    assert passed.code == 0, passed.err
    assert json.loads(passed.out) == {
        "model": "fare-regressor", "alias": "champion", "version": "1", "holder_run": "first",
        "run_name": "first", "promoted": True,
    }  # fmt: skip
    refused = invoke(capsys, "models", "gate", "--run-name", "again")
    assert refused.code == 9
    assert "the candidate of run 'again' was not promoted" in refused.err
    missing = invoke(capsys, "models", "gate", "--run-name", "first", "--model", "nothing")
    assert missing.code == 3
    assert "no version of nothing holds @champion" in missing.err
