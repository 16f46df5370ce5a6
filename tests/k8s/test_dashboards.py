"""The Grafana dashboards: every query parses and names only exported series; files in sync."""

from __future__ import annotations

import json

import promql_parser
import pytest

from lakeserve.observability import dashboards, rules
from lakeserve.observability.vocabulary import EXTERNAL, series_names
from tests.k8s.validate import K8S, render

KNOWN = series_names() | set(EXTERNAL) | rules.recorded()
QUERIES = dashboards.queries()


def metric_names(expr: str) -> set[str]:
    """Return every metric name EXPR selects; raise ValueError on a syntax error."""
    found: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            named = [m for m in node.matchers.matchers if m.name == "__name__"]
            if node.name:
                found.add(node.name)
            for matcher in named:
                # A regex over names cannot be checked against a list: not allowed here.
                assert str(matcher.op) == "MatchOp.Equal", f"{expr}: __name__ by {matcher.op}"
                found.add(matcher.value)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return found


def test_the_name_check_sees_selectors_everywhere_and_rejects_bad_promql() -> None:
    expr = (
        'sum by (route) (rate(a_total[5m])) / on() group_left b + {__name__="c"}'
        " and histogram_quantile(0.9, sum by (le) (rate(d_bucket[1h])))"
    )
    assert metric_names(expr) == {"a_total", "b", "c", "d_bucket"}
    with pytest.raises(ValueError):
        metric_names("sum(rate(a_total[5m])")


def test_every_dashboard_has_queries() -> None:
    assert {q.dashboard for q in QUERIES} == set(dashboards.DASHBOARDS)
    assert len(QUERIES) >= 40


def test_every_panel_query_parses_and_names_only_exported_series() -> None:
    problems = []
    for query in QUERIES:
        try:
            unknown = metric_names(query.expr) - KNOWN
        except ValueError as exc:
            problems.append(f"{query.dashboard}/{query.panel}: {exc}: {query.expr}")
            continue
        if unknown:
            problems.append(f"{query.dashboard}/{query.panel}: unknown {sorted(unknown)}")
    assert problems == []


def test_every_rule_expression_names_only_exported_series() -> None:
    problems = []
    for name, expr in rules.expressions():
        unknown = metric_names(expr) - KNOWN
        if unknown:
            problems.append(f"{name}: unknown {sorted(unknown)}")
    assert problems == []


def test_every_recorded_series_is_used() -> None:
    used = set().union(*(metric_names(expr) for _, expr in rules.expressions()))
    used |= set().union(*(metric_names(q.expr) for q in QUERIES))
    assert rules.recorded() - used == set()


def test_committed_dashboards_are_generated_from_the_code() -> None:
    assert dashboards.main(["--check"]) == 0, "run `python -m lakeserve.observability.dashboards`"
    files = set(dashboards.DIRECTORY.glob("*.json"))
    assert files == {dashboards.path(name) for name in dashboards.DASHBOARDS}


@pytest.mark.parametrize("name", sorted(dashboards.DASHBOARDS))
def test_every_panel_queries_the_chosen_data_source(name: str) -> None:
    model = dashboards.DASHBOARDS[name]()
    assert model["uid"] == f"lakeserve-{name}"
    [variable] = model["templating"]["list"]
    assert (variable["name"], variable["type"], variable["query"]) == (
        "datasource", "datasource", "prometheus",
    )  # fmt: skip
    panels = dashboards.panels(model)
    ids = [panel["id"] for panel in panels]
    assert len(set(ids)) == len(ids) and 0 not in ids
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and panel["title"] and panel["description"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert "$" not in target["expr"], "queries() promises PromQL without variables"


@pytest.mark.parametrize("name", sorted(dashboards.DASHBOARDS))
def test_each_dashboard_ships_as_a_configmap_for_grafanas_sidecar(name: str) -> None:
    objects = {(o["kind"], o["metadata"]["name"]): o for o in render(K8S / "base")}
    config = objects[("ConfigMap", f"lakeserve-dashboard-{name}")]
    assert config["metadata"]["namespace"] == "lakeserve-platform"
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    [(key, text)] = config["data"].items()
    assert key == dashboards.path(name).name
    assert json.loads(text) == dashboards.DASHBOARDS[name]()
