"""A batch job's pushed outcome: exit codes, the success stamp, and a gateway that is down."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import typer
from prometheus_client import Gauge
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from kernel.errors import DataError, DriftDetected
from kernel.jobs import PushSettings, exit_code, job_run
from tests.utils.processes import free_port


class Gateway:
    """Records what was pushed: (method, path, exposition text)."""

    def __init__(self) -> None:
        self.pushes: list[tuple[str, str, str]] = []
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                gateway.pushes.append(("POST", self.path, body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def values(self) -> dict[str, float]:
        return {
            sample.name: sample.value
            for _, _, text in self.pushes
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    fake = Gateway()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.server.shutdown()


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (None, 0),
        (DataError("no table"), 3),
        (DriftDetected("shift"), 8),
        (typer.Exit(9), 9),
        (typer.BadParameter("a config is required"), 2),
        (SystemExit(4), 4),
        (KeyboardInterrupt(), 130),
        (RuntimeError("bug"), 1),
    ],
)
def test_exit_code_is_the_one_the_cli_gives(exc: BaseException | None, code: int) -> None:
    assert exit_code(exc) == code


def test_a_successful_run_pushes_its_outcome_and_the_success_stamp(gateway: Gateway) -> None:
    with job_run("train", "fare", PushSettings(pushgateway_url=gateway.url)) as job:
        job.name = "fare-regressor"  # known once the config is read
        job.make(Gauge, "lakeserve_training_promoted", "x").labels().set(1)
    paths = {path for _, path, _ in gateway.pushes}
    assert paths == {"/metrics/job/train/name/fare-regressor"}
    values = gateway.values()
    assert values["lakeserve_job_exit_code"] == 0
    assert values["lakeserve_job_last_success_timestamp_seconds"] == pytest.approx(
        values["lakeserve_job_last_run_timestamp_seconds"]
    )
    assert "lakeserve_training_promoted" in values


def test_a_failed_run_pushes_its_code_and_leaves_the_last_success_alone(
    gateway: Gateway,
) -> None:
    with (
        pytest.raises(DriftDetected),
        job_run("monitor", "fare", PushSettings(pushgateway_url=gateway.url)),
    ):
        raise DriftDetected("pickup_borough drifted")
    values = gateway.values()
    assert values["lakeserve_job_exit_code"] == 8
    assert "lakeserve_job_last_success_timestamp_seconds" not in values
    assert [method for method, _, _ in gateway.pushes] == ["POST"]  # adds, never replaces


def test_a_gateway_that_is_down_is_a_warning_not_another_exit_code() -> None:
    down = f"http://127.0.0.1:{free_port()}"
    with capture_logs() as logs, job_run("ingest", "docs", PushSettings(pushgateway_url=down)):
        pass  # the run succeeded: nothing raises although the push failed
    [warning] = logs
    assert (warning["event"], warning["log_level"], warning["job"]) == (
        "metrics push failed", "warning", "ingest"
    )  # fmt: skip


def test_without_a_gateway_nothing_is_pushed(gateway: Gateway) -> None:
    with job_run("ingest", "docs", PushSettings()):
        pass
    assert gateway.pushes == []
