"""Grafana dashboards of the platform, built with grafana-foundation-sdk: serving, RAG, the loop.

`python -m lakeserve.observability.dashboards` writes them as JSON to
k8s/base/observability/dashboards/ (`make k8s-sync`), which the base ships as ConfigMaps
labelled `grafana_dashboard: "1"` for the Grafana chart's dashboard sidecar; `--check` exits 1
when a file is stale. Every panel queries the data source chosen in the `datasource` variable.

`queries()` returns every (dashboard, panel title, PromQL) of every panel target, the dashboard
named by its key in DASHBOARDS ("serving", "rag", "loop"; uid and file `lakeserve-<key>`): the tests
check each names only metrics the platform exports, and a live test can run each against a real
Prometheus. The PromQL holds no Grafana variables (fixed [5m] windows), so it runs as it is.
Names come from `lakeserve.observability.vocabulary`, Ray's and Kubernetes' series it lists as
EXTERNAL, and the recording rules of lakeserve.observability.rules.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from grafana_foundation_sdk.builders import dashboard as gd
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef, ValueMap, ValueMappingResult

ROOT = Path(__file__).parents[2]
DIRECTORY = ROOT / "k8s" / "base" / "observability" / "dashboards"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
AVAILABILITY_BUDGET = 0.005  # SLO 99.5% (the rules file's header)
LATENCY_BUDGET = 0.01  # SLO 99%
RAG_ROUTES = "rag_query|chat|chat_stream|feedback"
EXIT_CODES = {"0": ("ok", "green"), "8": ("drift", "orange"), "9": ("no retrain", "blue")}


class Query(NamedTuple):
    """One panel target: the dashboard's key in DASHBOARDS, the panel's title and its PromQL."""

    dashboard: str
    panel: str
    expr: str


Target = tuple[str, str]  # (PromQL, legend)


class Board:
    """A dashboard being built: numbers panels and lays them out in rows of two or four."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self.builder = (
            gd.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(["lakeserve"])
            .refresh("30s")
            .time("now-6h", "now")
            .timezone("browser")
            .with_variable(
                gd.DatasourceVariable("datasource").label("Data source").type("prometheus")
            )
        )
        self.ids = 0

    def _id(self) -> int:
        self.ids += 1
        return self.ids

    def row(self, title: str) -> Board:
        self.builder.with_row(gd.Row(title).id(self._id()))
        return self

    def _targets(self, panel: Any, targets: list[Target]) -> Any:
        for index, (expr, legend) in enumerate(targets):
            panel.with_target(
                prometheus.Dataquery()
                .expr(expr)
                .legend_format(legend)
                .ref_id(chr(ord("A") + index))
                .datasource(DATASOURCE)
            )
        return panel.id(self._id()).datasource(DATASOURCE)

    def graph(
        self, title: str, description: str, unit: str, targets: list[Target], span: int = 12
    ) -> Board:
        panel = timeseries.Panel().title(title).description(description).unit(unit).span(span)
        self.builder.with_panel(self._targets(panel.height(8), targets))
        return self

    def value(
        self,
        title: str,
        description: str,
        unit: str,
        targets: list[Target],
        mappings: dict[str, tuple[str, str]] | None = None,
        span: int = 6,
    ) -> Board:
        panel = stat.Panel().title(title).description(description).unit(unit).span(span)
        if mappings:
            options = {k: ValueMappingResult(text=t, color=c) for k, (t, c) in mappings.items()}
            panel.mappings([ValueMap(options=options)])
        self.builder.with_panel(self._targets(panel.height(6), targets))
        return self

    def build(self) -> dict[str, Any]:
        built: dict[str, Any] = json.loads(json.dumps(self.builder.build(), cls=JSONEncoder))
        return built


def _quantiles(metric: str, by: str, selector: str = "") -> list[Target]:
    return [
        (
            f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{selector}[5m])))",
            f"{{{{{by.split(', ')[0]}}}}} p{round(q * 100)}",
        )
        for q in (0.5, 0.95, 0.99)
    ]


def serving() -> dict[str, Any]:
    """Return the serving dashboard: traffic, errors, latency, SLO burn, models, capacity."""
    board = Board(
        "lakeserve-serving",
        "Lakeserve serving",
        "Model and RAG routes of the ingress replicas: traffic, errors, latency and SLO burn, "
        "models loaded, batching, autoscaling and the request log.",
    )
    board.row("Traffic and errors")
    board.graph(
        "Requests by route and status class",
        "Requests per second over 5m (lakeserve:requests:rate5m), model and RAG routes.",
        "reqps",
        [
            (
                "sum by (route, status_class) (lakeserve:requests:rate5m)",
                "{{route}} {{status_class}}",
            )
        ],
    )
    board.graph(
        "Error ratio by route (5xx of non-4xx)",
        "The availability SLI: 5xx answers among requests that are not client errors.",
        "percentunit",
        [
            ("lakeserve:request_errors:ratio_rate5m", "{{route}} 5m"),
            ("lakeserve:request_errors:ratio_rate1h", "{{route}} 1h"),
        ],
    )
    board.graph(
        "Errors by model and type",
        "Inference errors per second by error type (the HTTP edge's error table).",
        "reqps",
        [("sum by (model, type) (rate(lakeserve_model_errors_total[5m]))", "{{model}} {{type}}")],
    )
    board.graph(
        "Out-of-domain values by feature",
        "Request values outside the served version's training domain, per second.",
        "short",
        [
            (
                "sum by (model, feature) (rate(lakeserve_model_out_of_domain_values_total[5m]))",
                "{{model}} {{feature}}",
            )
        ],
    )
    board.row("Latency")
    board.graph(
        "Prediction latency by route",
        "p50/p95/p99 from the request duration histogram (SLO: 99% within 0.1 s).",
        "s",
        _quantiles("lakeserve_model_request_duration_seconds", "route"),
    )
    board.graph(
        "Requests slower than the SLO threshold",
        "Share of requests over 0.1 s (predictions) or 20 s (RAG), per route, over 5m.",
        "percentunit",
        [("lakeserve:requests_slow:ratio_rate5m", "{{route}}")],
    )
    board.row("SLO burn rate")
    board.graph(
        "Availability burn rate",
        "Error ratio over the error budget (0.5%): 14.4 over 1h pages, 1 spends the budget "
        "exactly in 30 days.",
        "short",
        [
            (f"lakeserve:request_errors:ratio_rate1h / {AVAILABILITY_BUDGET}", "{{route}} 1h"),
            (f"lakeserve:request_errors:ratio_rate6h / {AVAILABILITY_BUDGET}", "{{route}} 6h"),
            (f"lakeserve:request_errors:ratio_rate3d / {AVAILABILITY_BUDGET}", "{{route}} 3d"),
        ],
    )
    board.graph(
        "Latency burn rate",
        "Slow ratio over the latency budget (1%).",
        "short",
        [
            (f"lakeserve:requests_slow:ratio_rate1h / {LATENCY_BUDGET}", "{{route}} 1h"),
            (f"lakeserve:requests_slow:ratio_rate6h / {LATENCY_BUDGET}", "{{route}} 6h"),
            (f"lakeserve:requests_slow:ratio_rate3d / {LATENCY_BUDGET}", "{{route}} 3d"),
        ],
    )
    board.row("Models")
    board.value(
        "Model ready (all replicas)",
        "1 when every replica hosting the model has a version loaded.",
        "none",
        [("min by (model) (lakeserve_model_ready)", "{{model}}")],
    )
    board.value(
        "Loaded version",
        "The version each model serves now (one series per version being served).",
        "none",
        [("max by (model, version) (lakeserve_model_loaded)", "{{model}} v{{version}}")],
    )
    board.graph(
        "Batch sizes",
        "Requests and rows predicted together in one model call (p50, p95).",
        "short",
        [
            (
                "histogram_quantile(0.5, sum by (model, le) "
                "(rate(lakeserve_model_batch_requests_bucket[5m])))",
                "{{model}} requests p50",
            ),
            (
                "histogram_quantile(0.95, sum by (model, le) "
                "(rate(lakeserve_model_batch_requests_bucket[5m])))",
                "{{model}} requests p95",
            ),
            (
                "histogram_quantile(0.95, sum by (model, le) "
                "(rate(lakeserve_model_batch_rows_bucket[5m])))",
                "{{model}} rows p95",
            ),
        ],
    )
    board.row("Capacity and request log")
    board.graph(
        "Replicas: desired, target, healthy",
        "Desired above target: the autoscaler wants more than max_replicas allows.",
        "short",
        [
            (
                "max by (deployment) (ray_serve_autoscaling_desired_replicas)",
                "{{deployment}} desired",
            ),
            (
                "max by (deployment) (ray_serve_autoscaling_target_replicas)",
                "{{deployment}} target",
            ),
            (
                "sum by (deployment) (ray_serve_deployment_replica_healthy)",
                "{{deployment}} healthy",
            ),
        ],
    )
    board.graph(
        "Ongoing requests",
        "Requests in flight at the replicas, by deployment.",
        "short",
        [("sum by (deployment) (ray_serve_num_ongoing_requests_at_replicas)", "{{deployment}}")],
    )
    board.graph(
        "Request-log rows by outcome",
        "Rows per second written, dropped (queue full), rejected (schema), lost (drain).",
        "short",
        [
            (
                "sum by (table, outcome) (rate(lakeserve_request_log_events_total[5m]))",
                "{{table}} {{outcome}}",
            )
        ],
    )
    board.graph(
        "Request-log queue",
        "Rows waiting to be written, summed over replicas.",
        "short",
        [("sum by (table) (lakeserve_request_log_queue_rows)", "{{table}}")],
    )
    return board.build()


def rag() -> dict[str, Any]:
    """Return the RAG dashboard: routes, the index replicas serve, feedback, the chat page."""
    board = Board(
        "lakeserve-rag",
        "Lakeserve RAG",
        "RAG routes, the index each replica serves and how fresh it is, feedback, and the chat "
        "page's questions, first-event latency and feedback.",
    )
    board.row("Routes")
    board.graph(
        "RAG requests by route and status class",
        "Requests per second over 5m.",
        "reqps",
        [
            (
                "sum by (route, status_class) (rate(lakeserve_rag_requests_total[5m]))",
                "{{route}} {{status_class}}",
            )
        ],
    )
    board.graph(
        "RAG error ratio by route",
        "5xx among requests that are not client errors, over 5m.",
        "percentunit",
        [(f'lakeserve:request_errors:ratio_rate5m{{route=~"{RAG_ROUTES}"}}', "{{route}}")],
    )
    board.graph(
        "RAG latency by route",
        "p50/p95/p99 to the full answer (chat_stream: to the first event); SLO: 99% within 20 s.",
        "s",
        _quantiles("lakeserve_rag_request_duration_seconds", "route"),
        span=24,
    )
    board.row("Index")
    board.value(
        "Index ready (all replicas)",
        "1 when every RAG replica has a non-empty index and Chroma answered its last check.",
        "none",
        [("min by (collection) (lakeserve_rag_index_ready)", "{{collection}}")],
    )
    board.value(
        "Chunks served",
        "Chunks in the keyword index, the largest of the replicas.",
        "short",
        [("max by (collection) (lakeserve_rag_index_chunks)", "{{collection}}")],
    )
    board.graph(
        "Index age: served vs last ingest",
        "Seconds since the chunks changed: as the oldest replica serves them, and as the last "
        "ingest left them. Served older than ingested for long: a replica missed the refresh.",
        "s",
        [
            (
                "time() - min by (collection) (lakeserve_rag_index_changed_timestamp_seconds)",
                "{{collection}} served",
            ),
            (
                "time() - max by (name) "
                '(lakeserve_rag_ingest_changed_timestamp_seconds{job="ingest"})',
                "{{name}} ingested",
            ),
        ],
    )
    board.graph(
        "Ingest chunks by outcome",
        "What the last ingest run did with the collection's chunks.",
        "short",
        [
            (
                'max by (name, outcome) (lakeserve_rag_ingest_chunks{job="ingest"})',
                "{{name}} {{outcome}}",
            )
        ],
    )
    board.row("Feedback and the chat page")
    board.graph(
        "Feedback stored by rating",
        "Feedback events stored by the API per hour.",
        "short",
        [("sum by (rating) (increase(lakeserve_rag_feedback_total[1h]))", "{{rating}}")],
    )
    board.graph(
        "Chat questions by outcome",
        "Questions asked on the chat page per second (answered, not_found, error).",
        "short",
        [("sum by (outcome) (rate(lakeserve_chat_questions_total[5m]))", "{{outcome}}")],
    )
    board.graph(
        "Chat time to first event",
        "From question to the API's first event (sources known), p50/p95.",
        "s",
        [
            (
                f"histogram_quantile({q}, sum by (le) "
                "(rate(lakeserve_chat_first_event_seconds_bucket[5m])))",
                f"p{round(q * 100)}",
            )
            for q in (0.5, 0.95)
        ],
    )
    board.graph(
        "Chat feedback by rating and outcome",
        "Feedback the chat page sent per hour (stored or error).",
        "short",
        [
            (
                "sum by (rating, outcome) (increase(lakeserve_chat_feedback_total[1h]))",
                "{{rating}} {{outcome}}",
            )
        ],
    )
    return board.build()


def loop() -> dict[str, Any]:
    """Return the loop dashboard: batch jobs' outcomes, training, the monitor's drift."""
    board = Board(
        "lakeserve-loop",
        "Lakeserve training and monitoring loop",
        "What the batch jobs (train, monitor, ingest) pushed to the Pushgateway at their last run, "
        "and Kubernetes' view of the training Jobs.",
    )
    board.row("Jobs")
    board.value(
        "Since last success",
        "Time since each job's last successful run.",
        "s",
        [
            (
                "time() - max by (job, name) (lakeserve_job_last_success_timestamp_seconds)",
                "{{job}} {{name}}",
            )
        ],
        span=12,
    )
    board.value(
        "Last exit code",
        "0 ok; monitor 8 = drift found, 9 = no retrain needed; anything else failed.",
        "none",
        [("max by (job, name) (lakeserve_job_exit_code)", "{{job}} {{name}}")],
        mappings=EXIT_CODES,
        span=12,
    )
    board.value(
        "Last run duration",
        "How long each job's last run took.",
        "s",
        [("max by (job, name) (lakeserve_job_duration_seconds)", "{{job}} {{name}}")],
        span=12,
    )
    board.value(
        "Training Jobs' failed pods",
        "Failed pods of the Jobs in lakeserve-jobs (kube-state-metrics).",
        "short",
        [
            (
                'sum by (job_name) (kube_job_status_failed{namespace="lakeserve-jobs"})',
                "{{job_name}}",
            )
        ],
        span=12,
    )
    board.row("Training")
    board.value(
        "Promoted",
        "1 when the last training run's version took the alias.",
        "none",
        [('max by (name) (lakeserve_training_promoted{job="train"})', "{{name}}")],
        mappings={"0": ("kept champion", "blue"), "1": ("promoted", "green")},
    )
    board.graph(
        "Holdout metrics",
        "The last training runs' holdout metrics.",
        "short",
        [
            (
                'max by (name, metric) (lakeserve_training_holdout{job="train"})',
                "{{name}} {{metric}}",
            )
        ],
        span=18,
    )
    board.row("Monitor")
    board.value(
        "Monitor alarms",
        "Thresholds the last monitored window crossed (0: no alarm).",
        "none",
        [('max by (name) (lakeserve_monitor_alarms{job="monitor"})', "{{name}}")],
    )
    board.value(
        "Rows monitored",
        "Logged rows the last monitor run measured.",
        "short",
        [('max by (name) (lakeserve_monitor_window_rows{job="monitor"})', "{{name}}")],
    )
    board.graph(
        "Drift score vs threshold per column",
        "Each column's drift score and its alarm threshold, from the last monitor run.",
        "short",
        [
            (
                'max by (name, column) (lakeserve_monitor_drift_score{job="monitor"})',
                "{{name}} {{column}} score",
            ),
            (
                'max by (name, column) (lakeserve_monitor_drift_threshold{job="monitor"})',
                "{{name}} {{column}} threshold",
            ),
        ],
    )
    return board.build()


DASHBOARDS: dict[str, Callable[[], dict[str, Any]]] = {"serving": serving, "rag": rag, "loop": loop}


def panels(model: dict[str, Any]) -> list[dict[str, Any]]:
    """Return every panel of a dashboard model, those inside collapsed rows included."""
    found = []
    for panel in model.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries() -> list[Query]:
    """Return (dashboard, panel title, PromQL) of every target of every dashboard."""
    return [
        Query(name, panel["title"], target["expr"])
        for name, build in DASHBOARDS.items()
        for panel in panels(build())
        for target in panel.get("targets", [])
    ]


def path(name: str) -> Path:
    """Return the JSON file of dashboard NAME (a key of DASHBOARDS)."""
    return DIRECTORY / f"lakeserve-{name}.json"


def render(model: dict[str, Any]) -> str:
    """Return a dashboard model as the JSON file the ConfigMap ships."""
    return json.dumps(model, indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    expected = {path(name): render(build()) for name, build in DASHBOARDS.items()}
    if "--check" in argv:
        stale = [str(p) for p, text in expected.items() if not p.exists() or p.read_text() != text]
        if stale:
            sys.stderr.write(
                f"{', '.join(stale)} stale: run `python -m lakeserve.observability.dashboards`\n"
            )
            return 1
        return 0
    DIRECTORY.mkdir(parents=True, exist_ok=True)
    for file, text in expected.items():
        file.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
