"""`lakeserve serve`: run the serving platform locally until Ctrl-C (or one self-check)."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import structlog
import typer

from kernel.console import err, out
from kernel.errors import LakeserveError
from serving.settings import ServingSettings

log = structlog.get_logger(__name__)


def serve_command(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="Serve config YAML (default: LAKESERVE_SERVE_CONFIG).", dir_okay=False
        ),
    ] = None,
    once: Annotated[
        bool, typer.Option(help="Start, send one self-check request, print it and stop.")
    ] = False,
    ready_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the models to load.", min=1)
    ] = 180.0,
) -> None:
    """Serve the registered models (v2 and MLflow-style) on Ray Serve at LAKESERVE_HTTP_PORT."""
    from serving import runner

    overrides: dict[str, Any] = {"serve_config": config} if config else {}
    settings = ServingSettings(**overrides)
    base_url = f"http://{settings.http_host}:{settings.http_port}"
    stopping, reloading = threading.Event(), threading.Event()
    settings.keys()  # fail now, not in every replica, if LAKESERVE_API_KEYS is malformed
    deployed: dict[str, Any] | None = None
    try:
        with err.status("starting Ray Serve and loading models"):
            deployed = runner.start(settings)
            # After ray.init, which installs handlers of its own: Ctrl-C and SIGTERM (Kubernetes,
            # a backgrounded shell job where SIGINT is ignored) both stop Serve cleanly.
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stopping.set())
            # SIGHUP: deploy the config file again (a rolling update, like a RayService edit).
            signal.signal(signal.SIGHUP, lambda *_: reloading.set())
            runner.wait_until_ready(base_url, ready_timeout)
        models = [
            m["name"] for app in deployed["applications"] for m in app["args"].get("models", [])
        ]
        out.print(f"serving {', '.join(models)} at {base_url}", soft_wrap=True)
        out.print(f"  API reference  {base_url}/docs", soft_wrap=True)
        out.print(f"  hosted models  {base_url}/models", soft_wrap=True)
        out.print(f"  metrics        {base_url}/metrics  (this replica's)", soft_wrap=True)
        exported = runner.metrics_url(settings)
        if exported:
            out.print(
                f"  Prometheus     {exported}  (every replica, Ray Serve's too)", soft_wrap=True
            )
        if any(app["args"].get("rag") for app in deployed["applications"]):
            out.print(f"  RAG            {base_url}/rag/query  (/rag/health)", soft_wrap=True)
            out.print(f"  OpenAI API     {base_url}/v1  (model lakeserve-rag)", soft_wrap=True)
        if once:
            _self_check(base_url, settings, models[0])
            return
        out.print("press Ctrl-C to stop, send SIGHUP to redeploy the config file")
        while not stopping.wait(0.5):
            if reloading.is_set():
                reloading.clear()
                deployed = _redeploy(settings, deployed)
        err.print("stopping on signal")
    except KeyboardInterrupt:
        pass
    finally:
        with err.status("stopping"):
            runner.stop(settings, deployed)


def _redeploy(settings: ServingSettings, deployed: dict[str, Any]) -> dict[str, Any]:
    from serving import runner

    try:
        config = runner.redeploy(settings)
    except LakeserveError as exc:
        err.print(f"redeploy refused, still serving the previous config: {exc}")
        log.warning("redeploy refused", error=str(exc))
        return deployed
    err.print(f"redeploying {settings.serve_config}")
    log.info("redeploying", config=str(settings.serve_config))
    return config


def _self_check(base_url: str, settings: ServingSettings, model: str) -> None:
    """Send one v2 request built from the model's metadata and a gold row; print the answer."""
    from kernel.errors import LakeserveError

    headers = {"Authorization": f"Bearer {settings.keys()[0]}"} if settings.keys() else {}
    with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
        metadata = _model_metadata(client, model)
        row = _sample_row([spec["name"] for spec in metadata["inputs"]])
        inputs = [
            {
                "name": spec["name"],
                "shape": [1],
                "datatype": spec["datatype"],
                "data": [row[spec["name"]]],
            }
            for spec in metadata["inputs"]
        ]
        answer = client.post(
            f"/v2/models/{model}/infer", json={"id": "self-check", "inputs": inputs}
        )
    if answer.status_code != 200:
        raise LakeserveError(f"self-check failed: {answer.status_code} {answer.text}")
    body = answer.json()
    out.print(
        f"self-check: {model} v{body['model_version']} predicted "
        f"{body['outputs'][0]['data'][0]:.2f} for {row}",
        soft_wrap=True,
    )


def _model_metadata(client: httpx.Client, model: str, timeout_s: float = 60) -> dict[str, Any]:
    """Return the model's v2 metadata, waiting while the ingress still answers 503 or 404.

    Readiness was seen through one route a moment ago; the proxy's route table and a replica's
    model slot can lag it briefly, so a not-yet answer is retried, anything else is an error.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get(f"/v2/models/{model}")
        if response.status_code == 200:
            with contextlib.suppress(ValueError):
                body = response.json()
                if isinstance(body, dict) and isinstance(body.get("inputs"), list):
                    return body
        elif response.status_code in (404, 503) and time.monotonic() < deadline:
            time.sleep(0.5)
            continue
        raise LakeserveError(
            f"self-check: metadata of {model} answered {response.status_code}: "
            f"{response.text[:300]}"
        )


def _sample_row(columns: list[str]) -> dict[str, Any]:
    from lakehouse.settings import LakehouseSettings
    from lakehouse.tables import Lakehouse, TableRef

    lake = Lakehouse(LakehouseSettings())
    return lake.dataset(TableRef("gold", "trips")).head(1, columns=columns).to_pylist()[0]
