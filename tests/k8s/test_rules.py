"""The Prometheus rules: promtool checks and unit tests, alert metadata, the operator's copy."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lakeserve.observability import rules
from tests.k8s.validate import K8S, render

PROMTOOL_TESTS = sorted((Path(__file__).parent / "promtool").glob("*.yaml"))
ALERTS = {rule["alert"]: rule for rule in rules.alerts()}


def promtool() -> str:
    """Return promtool's path; fail saying how to install it."""
    found = shutil.which("promtool")
    if not found:
        pytest.fail("promtool not found: `make prometheus` installs Debian's prometheus package")
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=300)


def test_rules_file_passes_promtool_check() -> None:
    done = run_promtool("check", "rules", str(rules.RULES))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_pass() -> None:
    assert {p.stem for p in PROMTOOL_TESTS} >= {"slo-fast", "slo-slow", "serving", "rag", "loop"}
    done = run_promtool("test", "rules", *map(str, PROMTOOL_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("SUCCESS") == len(PROMTOOL_TESTS), done.stdout


def alert_tests() -> list[dict[str, Any]]:
    return [
        case
        for path in PROMTOOL_TESTS
        for group in yaml.safe_load(path.read_text())["tests"]
        for case in group.get("alert_rule_test", [])
    ]


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    firing = {case["alertname"] for case in alert_tests() if case.get("exp_alerts")}
    quiet = {case["alertname"] for case in alert_tests() if not case.get("exp_alerts")}
    assert set(ALERTS) - firing == set(), "alerts never tested firing"
    assert set(ALERTS) - quiet == set(), "alerts never tested not firing"
    assert firing | quiet <= set(ALERTS), "tests of alerts that do not exist"


def test_every_promtool_test_loads_the_shipped_rules_file() -> None:
    for path in PROMTOOL_TESTS:
        files = yaml.safe_load(path.read_text())["rule_files"]
        assert [(path.parent / f).resolve() for f in files] == [rules.RULES.resolve()], path


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_every_alert_says_how_bad_what_and_what_to_do(name: str) -> None:
    alert = ALERTS[name]
    assert alert["labels"]["severity"] in {"critical", "warning"}
    assert set(alert["annotations"]) == {"summary", "description", "action"}
    assert all(len(text.strip()) > 20 for text in alert["annotations"].values())
    assert re.fullmatch(r"\d+[mh]", alert.get("for", "")), "every alert waits (`for:`)"
    assert name.startswith("Lakeserve")


def test_recording_rules_are_named_level_metric_operations() -> None:
    names = rules.recorded()
    assert len(names) == 21 and rules.count() == len(names) + len(ALERTS)
    for name in names:
        assert re.fullmatch(r"lakeserve:[a-z_]+:[a-z_]*rate(5m|30m|1h|2h|6h|1d|3d)", name), name


def test_prometheus_rule_is_generated_from_the_rules_file() -> None:
    assert rules.main(["--check"]) == 0, "run `python -m lakeserve.observability.rules`"
    [rule] = render(rules.PROMETHEUS_RULE)
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == rules.groups()


def test_a_changed_rules_file_makes_the_prometheus_rule_stale(tmp_path: Path) -> None:
    changed = tmp_path / "rules.yaml"
    changed.write_text(rules.RULES.read_text().replace("for: 15m", "for: 16m", 1))
    assert rules.prometheus_rule(changed) != rules.prometheus_rule()
    assert "for: 16m" in rules.prometheus_rule(changed)


def test_the_operator_component_ships_the_rules_and_scrapes_the_pushgateway() -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(K8S / "overlays" / "prod")}
    assert objects[("PrometheusRule", "lakeserve")]["spec"]["groups"] == rules.groups()
    [endpoint] = objects[("ServiceMonitor", "lakeserve-pushgateway")]["spec"]["endpoints"]
    assert endpoint["honorLabels"] is True


@pytest.mark.parametrize("target", ["base", "dev", "prod"])
def test_a_plain_prometheus_gets_the_rules_file_and_a_pushgateway_job(target: str) -> None:
    path = K8S / target if target == "base" else K8S / "overlays" / target
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(path)}
    config = objects[("ConfigMap", "lakeserve-prometheus-rules")]
    assert config["metadata"]["namespace"] == "lakeserve-platform"
    assert config["data"] == {"lakeserve-rules.yaml": rules.RULES.read_text()}
    scrape = objects[("ConfigMap", "lakeserve-prometheus-scrape")]["data"]["scrape-configs.yaml"]
    jobs = {job["job_name"]: job for job in yaml.safe_load(scrape)}
    assert jobs["lakeserve-pushgateway"]["honor_labels"] is True
