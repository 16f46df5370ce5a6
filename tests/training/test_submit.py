"""`lakeserve train submit`: the Job manifest, and create + follow against an HTTP Kubernetes API.

The API server here is a small fake speaking the Kubernetes REST paths the client uses (there is
no cluster on these machines); the manifests themselves are validated against the real schemas in
tests/k8s.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from kernel.errors import ConfigError
from tests.utils.cli import spawn
from tests.utils.processes import free_port
from training.cli import sweep_overrides

ROOT = Path(__file__).parents[2]
HGB = ROOT / "training" / "configs" / "fare-hgb.yaml"


def dry_run(*args: str) -> Any:
    return spawn("train", "submit", "--config", str(HGB), "--dry-run", *args)


def test_dry_run_prints_the_config_map_and_the_job() -> None:
    result = dry_run("--set", "model.params.max_iter=50", "--name", "train-x")
    assert result.code == 0, result.err
    config_map, job = yaml.safe_load_all(result.out)
    assert config_map["data"]["config.yaml"] == HGB.read_text()
    assert job["metadata"]["name"] == "train-x" and job["metadata"]["namespace"] == "lakeserve-jobs"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [
        "train", "--config", "/etc/lakeserve/train/config.yaml", "--json",
        "--run-name", "train-x", "--set", "model.params.max_iter=50",
    ]  # fmt: skip
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"]["values"] == [2, 3]
    assert rules[1] == {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    }
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert {"name": "config", "configMap": {"name": "train-x-config"}} in volumes


def test_default_name_is_unique_per_submission() -> None:
    config_map, job = yaml.safe_load_all(dry_run().out)
    assert job["metadata"]["name"].startswith("train-fare-hgb-2")
    assert config_map["metadata"]["name"] == job["metadata"]["name"] + "-config"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "model.params.max_iter=-1"], "max_iter"),
        (["--name", "Train_Job"], "invalid Job name 'Train_Job'"),
    ],
)
def test_bad_submission_fails_before_any_cluster_call(args: list[str], message: str) -> None:
    result = dry_run(*args)
    assert result.code == 2
    assert message in result.err and result.out == ""


def test_committed_job_file_is_the_dry_run_output() -> None:
    committed = (ROOT / "k8s" / "jobs" / "train-job.yaml").read_text()
    generated = dry_run("--name", "train-fare-hgb").out
    body = "".join(line for line in committed.splitlines(True) if not line.startswith("#"))
    assert body == generated, "regenerate k8s/jobs/train-job.yaml (see its header)"


def test_without_kubeconfig_submit_says_what_to_do(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "none")}
    result = spawn("train", "submit", "--config", str(HGB), env=env)
    assert result.code == 2
    assert "no Kubernetes configuration" in result.err and "--dry-run" in result.err


def test_sweep_entries_become_overrides(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump([{"a.b": 1}, {"a.b": 0.5, "c": "text", "d": None}]))
    assert sweep_overrides(sweep, 0) == ["a.b=1"]
    assert sweep_overrides(sweep, 1) == ["a.b=0.5", 'c="text"', "d=null"]
    with pytest.raises(ConfigError, match="sweep index 2 out of range"):
        sweep_overrides(sweep, 2)
    with pytest.raises(ConfigError, match="needs --sweep-index"):
        sweep_overrides(sweep, None)
    sweep.write_text("a: 1\n")
    with pytest.raises(ConfigError, match="must be a YAML list of mappings"):
        sweep_overrides(sweep, 0)


class FakeKube(ThreadingHTTPServer):
    """Kubernetes REST paths for jobs, configmaps, pods and logs; the Job ends as scripted."""

    def __init__(
        self, port: int, outcome: str, exit_code: int = 0, waiting: str | None = None
    ) -> None:
        super().__init__(("127.0.0.1", port), _KubeHandler)
        self.created: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.outcome = outcome
        self.exit_code = exit_code
        self.waiting = waiting  # a Pending pod's container waits for this reason
        self.refuse_config_maps = False
        self.polls = 0


class _KubeHandler(BaseHTTPRequestHandler):
    server: FakeKube

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        kind = body["kind"]
        if kind == "ConfigMap" and self.server.refuse_config_maps:
            self._json(403, {"kind": "Status", "message": "configmaps is forbidden"})
            return
        body["metadata"]["uid"] = f"uid-{kind.lower()}"
        self.server.created[kind] = body
        self._json(201, body)

    def do_DELETE(self) -> None:
        self.server.deleted.append(urlparse(self.path).path)
        self._json(200, {"kind": "Status", "status": "Success"})

    def do_GET(self) -> None:
        url = urlparse(self.path)
        name = self.server.created["Job"]["metadata"]["name"]
        if url.path.endswith("/status"):
            self.server.polls += 1
            done = self.server.polls > 1 and self.server.outcome != "running"
            condition = "Complete" if self.server.outcome == "ok" else "Failed"
            conditions = [{"type": condition, "status": "True", "reason": "BackoffLimitExceeded",
                           "message": "failed"}] if done else []  # fmt: skip
            status = {"conditions": conditions}
            self._json(200, {"kind": "Job", "metadata": {"name": name}, "status": status})
        elif url.path.endswith("/log"):
            assert parse_qs(url.query)["follow"] == ["true"]
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'training...\n{"version": "7"}\n')
        elif url.path.endswith("/pods"):
            assert parse_qs(url.query)["labelSelector"] == [f"batch.kubernetes.io/job-name={name}"]
            state: dict[str, Any] = {"terminated": {"exitCode": self.server.exit_code}}
            phase = "Running"
            if self.server.waiting:
                state = {"waiting": {"reason": self.server.waiting, "message": "not found"}}
                phase = "Pending"
            pod = {"metadata": {"name": f"{name}-abc", "creationTimestamp": "2026-11-24T00:00:00Z"},
                   "status": {"phase": phase,
                              "containerStatuses": [{"name": "train", "state": state, "image": "i",
                                                     "imageID": "", "ready": False,
                                                     "restartCount": 0}]}}  # fmt: skip
            self._json(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [pod]})
        else:
            self._json(404, {})

    def _json(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def kube(
    tmp_path: Path, outcome: str, exit_code: int = 0, waiting: str | None = None
) -> Iterator[tuple[FakeKube, dict[str, str]]]:
    server = FakeKube(free_port(), outcome, exit_code, waiting)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
        ],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "fake",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(path)}
    try:
        yield server, env
    finally:
        server.shutdown()
        server.server_close()


def test_submit_creates_the_job_then_its_owned_config_map_and_streams_logs(
    tmp_path: Path,
) -> None:
    for server, env in kube(tmp_path, "ok"):
        result = spawn("train", "submit", "--config", str(HGB), "--name", "t1", "--watch", env=env)
        assert result.code == 0, result.err
        assert "job lakeserve-jobs/t1 created" in result.err
        assert "--- pod t1-abc" in result.out and '{"version": "7"}' in result.out
        owner = server.created["ConfigMap"]["metadata"]["ownerReferences"]
        assert owner == [{"apiVersion": "batch/v1", "kind": "Job", "name": "t1", "uid": "uid-job"}]


def test_watch_returns_the_training_exit_code(tmp_path: Path) -> None:
    for _, env in kube(tmp_path, "failed", exit_code=3):
        result = spawn("train", "submit", "--config", str(HGB), "--name", "t2", "--watch", env=env)
        assert result.code == 3
        assert "Job failed: BackoffLimitExceeded" in result.out


def test_watch_stops_with_exit_6_when_the_image_cannot_be_pulled(tmp_path: Path) -> None:
    for _, env in kube(tmp_path, "running", waiting="ImagePullBackOff"):
        result = spawn("train", "submit", "--config", str(HGB), "--name", "t3", "--watch", env=env)
        assert result.code == 6, result.err
        assert "pod t3-abc cannot start: ImagePullBackOff" in result.err
        assert "kubectl -n lakeserve-jobs delete job t3" in result.err


def test_a_missing_secret_key_gets_a_grace_period_before_giving_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kernel.errors import WorkloadStuck
    from training import submit

    monkeypatch.setattr(submit, "POLL_S", 0.01)
    times = iter(range(0, 3600, 20))  # every poll is 20 s later
    for server, env in kube(tmp_path, "running", waiting="CreateContainerConfigError"):
        monkeypatch.setenv("KUBECONFIG", env["KUBECONFIG"])
        server.created["Job"] = {"metadata": {"name": "t4"}}
        submitter = submit.Submitter("lakeserve-jobs")
        with pytest.raises(WorkloadStuck, match="CreateContainerConfigError: not found"):
            submitter.follow("t4", print, clock=lambda: float(next(times)))
        # 0, 20, 40 s are within the minute of grace; 60 s is not.
        assert server.polls == 4


def test_a_refused_config_map_deletes_its_job_again(tmp_path: Path) -> None:
    for server, env in kube(tmp_path, "ok"):
        server.refuse_config_maps = True
        result = spawn("train", "submit", "--config", str(HGB), "--name", "t5", env=env)
        assert result.code == 5
        assert "refused the Job's ConfigMap: 403" in result.err
        assert "Job t5 deleted again" in result.err
        assert server.deleted == ["/apis/batch/v1/namespaces/lakeserve-jobs/jobs/t5"]


def test_image_pull_policy_is_an_option_and_checked() -> None:
    _, job = yaml.safe_load_all(dry_run("--image-pull-policy", "IfNotPresent").out)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    result = dry_run("--image-pull-policy", "Sometimes")
    assert result.code == 2 and "invalid image pull policy 'Sometimes'" in result.err


def test_every_sweep_entry_is_a_valid_config(tmp_path: Path) -> None:
    from training.config import load_config
    from training.models import validate

    config_map, job = yaml.safe_load_all((ROOT / "k8s" / "jobs" / "train-sweep.yaml").read_text())
    (tmp_path / "config.yaml").write_text(config_map["data"]["config.yaml"])
    (tmp_path / "sweep.yaml").write_text(config_map["data"]["sweep.yaml"])
    entries = yaml.safe_load(config_map["data"]["sweep.yaml"])
    assert job["spec"]["completions"] == len(entries)
    for index in range(len(entries)):
        overrides = sweep_overrides(tmp_path / "sweep.yaml", index)
        validate(load_config(tmp_path / "config.yaml", overrides).model)
