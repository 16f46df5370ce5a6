"""`lakeserve serve --once`: start, self-check through the real stack, stop; auth off by default."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.utils.platform import prepare, serve_env, write_serve_config
from tests.utils.processes import BIN, stop

pytestmark = pytest.mark.integration


def test_serve_once_answers_a_self_check_and_exits_cleanly(
    tmp_path: Path, mlflow_server: str
) -> None:
    prepare(tmp_path, mlflow_server, "fare-once")
    config = write_serve_config(tmp_path / "serve.yaml", "fare-once")
    port, ray_dir, env = serve_env(tmp_path, mlflow_server, config)
    process = subprocess.Popen(
        [str(BIN / "lakeserve"), "serve", "--once"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=420)
    finally:
        stop(process, marker=ray_dir)  # type: ignore[arg-type]
    assert process.returncode == 0, err[-3000:]
    assert f"serving fare-once at http://127.0.0.1:{port}" in out
    assert re.search(r"self-check: fare-once v1 predicted \d+\.\d\d for \{'trip_distance'", out)
