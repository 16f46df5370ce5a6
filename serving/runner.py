"""Run the Serve config on a local Ray (or a given cluster) the way `serve run CONFIG` does."""

from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import structlog

from kernel.cluster import init_ray
from kernel.errors import ConfigError, LakeserveError
from serving.settings import ServingSettings

log = structlog.get_logger(__name__)


def serve_environment() -> dict[str, str]:
    """Return the Ray Serve variables of the platform, the same locally and in a cluster.

    `python -m serving.kube` writes them into the RayService's ConfigMap (k8s/base/serving/
    serve.env): the cluster runs the proxy and the settings that were tested and benchmarked.
    """
    return {
        # Ray Serve's HAProxy ingress (HTTP only, no model multiplexing on the ingress, both
        # as Lakeserve uses it): ~10x the Python proxy's throughput here (bench/serving.py).
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        # Ray's throughput profile: user code on the replica's loop, buffered request logs,
        # direct ingress, GC frozen after start-up. Measured here: +20-30% req/s (bench/).
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
        # A replica that dies holding requests closes their connections without an answer.
        # Every route is safe to replay (predictions and RAG answers are pure, feedback is
        # deduplicated by event and answer id), so HAProxy retries those on another replica
        # instead of failing them; 503s (overload, not ready) are never retried.
        "RAY_SERVE_HAPROXY_RETRY_ON": "conn-failure empty-response",
        "RAY_SERVE_HAPROXY_RETRIES": "2",
        # HAProxy's per-request metrics (Serve's serve_num_http_requests and
        # serve_http_request_latency_ms) send one log line per request to a Python collector:
        # off, +12-23% req/s at 32-64 clients here (bench/serving.py). Every route counts and
        # times its own requests as lakeserve_* (serving/metrics.py) in any case.
        "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
    }


def ray_environment(settings: ServingSettings) -> dict[str, str]:
    """Return the variables Ray's processes must see when they start on this machine."""
    env = {
        **serve_environment(),
        # Local runs need no cluster auth token; a cluster sets its own mode.
        "RAY_AUTH_MODE": "disabled",
        "RAY_SERVE_ENABLE_HA_PROXY": "1" if settings.haproxy else "0",
        # A stopping replica stays reachable (30 s by default) so that external load balancers
        # can deregister it; on one machine HAProxy is reconfigured locally within a second.
        # (A cluster keeps the default: Kubernetes Services take that long.)
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "2",
    }
    # HAProxy keeps its config and socket under /tmp/haproxy-serve by default: one per port,
    # so two local servers (e.g. the demo and the tests) do not share it. Ray appends a 56-char
    # hash and HAProxy caps socket paths at 97 characters, so the base must stay short.
    state = settings.ray_tmpdir / f"h{settings.http_port}"
    if len(str(state)) > 30:
        raise ConfigError(
            f"LAKESERVE_RAY_TMPDIR {settings.ray_tmpdir} is too long (HAProxy socket)"
        )
    env.update(
        # HAProxy's stats and metrics ports are fixed by default (8404, 9101) and bind every
        # interface; two local servers would collide, so take free ones.
        RAY_SERVE_HAPROXY_STATS_PORT=str(_free_port()),
        RAY_SERVE_HAPROXY_METRICS_PORT=str(_free_port()),
        # The fallback proxy (HAProxy's backup server while no replica is up) binds 8500/9500
        # with SO_REUSEPORT: two local servers would both listen there and the kernel would
        # hand one server's requests to the other's proxy (seen: a 401 from the wrong server).
        RAY_SERVE_FALLBACK_PROXY_HTTP_PORT=str(_free_port()),
        RAY_SERVE_FALLBACK_PROXY_GRPC_PORT=str(_free_port()),
        RAY_SERVE_HAPROXY_CONFIG_FILE_LOC=str(state / "haproxy.cfg"),
        RAY_SERVE_HAPROXY_SOCKET_PATH=str(state / "admin.sock"),
        RAY_SERVE_HAPROXY_SERVER_STATE_BASE=str(state),
        RAY_SERVE_HAPROXY_SERVER_STATE_FILE=str(state / "server-state"),
    )
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on.

    Serve's proxies bind with SO_REUSEPORT, so a second local server on the same port would
    not fail: it would silently share the port and answer some of the first one's requests.

    Raises:
        ConfigError: the port is taken.
    """
    with socket.socket() as sock:
        # SO_REUSEADDR: connections of a server that just stopped (TIME_WAIT) do not count,
        # a listening socket still does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"{host}:{port} is already in use ({exc.strerror}): another `lakeserve serve`? "
                "Stop it or set LAKESERVE_HTTP_PORT"
            ) from exc


def _schema(settings: ServingSettings) -> tuple[dict[str, Any], Any]:
    """Return the Serve config file and its validated schema.

    Raises:
        ConfigError: the config does not validate.
    """
    from ray.serve.schema import ServeDeploySchema

    config = settings.deploy_config()
    try:
        return config, ServeDeploySchema.model_validate(config)
    except ValueError as exc:
        raise ConfigError(f"invalid serve config {settings.serve_config}: {exc}") from exc


def _deploy(schema: Any) -> None:
    from ray.serve._private import api as serve_api  # what `serve run CONFIG` uses

    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(),
        proxy_location=schema.proxy_location,
        # The proxies start with Serve and read tracing from here; replicas get the config's
        # from the controller when it is deployed.
        global_tracing_config=schema.tracing_config,
    )
    client.deploy_apps(schema, _blocking=False)


def start(settings: ServingSettings) -> dict[str, Any]:
    """Start (or join) Ray, start Serve and submit the config; return the config deployed."""
    config, schema = _schema(settings)
    if not settings.ray_address:  # a local Ray: the proxy binds on this machine
        _check_port_free(settings.http_host, settings.http_port)
    # Ray's raylet, controller and proxies read these at start-up from the environment they
    # inherit; this process is their parent, so that is where they must be set.
    for key, value in ray_environment(settings).items():
        os.environ.setdefault(key, value)
    Path(os.environ["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]).mkdir(parents=True, exist_ok=True)
    metrics: dict[str, Any] = {}
    if not settings.ray_address:  # Ray's metrics agent of this machine: a port Prometheus knows
        metrics["_metrics_export_port"] = settings.metrics_port or _free_port()
    init_ray(settings, namespace="serve", **metrics)
    _deploy(schema)
    return config


def metrics_url(settings: ServingSettings) -> str | None:
    """Return where Ray's metrics export of this node answers, when Ray is local."""
    import ray

    if settings.ray_address or not ray.is_initialized():
        return None
    port = ray._private.worker.global_worker.node.metrics_export_port
    return f"http://127.0.0.1:{port}/metrics"


def redeploy(settings: ServingSettings) -> dict[str, Any]:
    """Deploy the Serve config file as it is now to the running Serve; return it.

    Serve rolls the change out: replicas of a changed deployment are replaced one batch at a
    time and each old one drains (up to its graceful_shutdown_timeout_s) before it stops.

    Raises:
        ConfigError: the config no longer validates; what is running stays as it was.
    """
    config, schema = _schema(settings)
    _deploy(schema)
    return config


def wait_until_ready(base_url: str, timeout_s: float) -> None:
    """Wait for every application to run and the models to load; raise on failure."""
    from ray import serve
    from ray.serve.schema import ApplicationStatus

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = serve.status().applications
        failed = {
            n: a.message for n, a in statuses.items() if a.status == ApplicationStatus.DEPLOY_FAILED
        }
        if failed:
            raise LakeserveError(f"deployment failed: {failed}")
        running = statuses and all(a.status == ApplicationStatus.RUNNING for a in statuses.values())
        if running:
            try:
                if httpx.get(f"{base_url}/v2/health/ready", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.5)
    raise LakeserveError(
        f"serving did not become ready within {timeout_s:.0f}s{_model_errors(base_url)}"
    )


def _model_errors(base_url: str) -> str:
    """Say why models are not loaded, from the replicas' own account (health routes only)."""
    with contextlib.suppress(httpx.HTTPError, ValueError):
        # /models may need an API key; health stays open, so fall back to a plain message.
        response = httpx.get(f"{base_url}/models", timeout=2)
        if response.status_code == 200:
            problems = [
                f"{m['name']}@{m['alias']}: {m['last_error']}"
                for m in response.json()
                if not m["ready"] and m["last_error"]
            ]
            if problems:
                return "; " + "; ".join(problems)
    return ""


def stop(settings: ServingSettings, deployed: dict[str, Any] | None) -> None:
    """Shut the local Ray down; on a shared cluster delete only our applications."""
    import ray
    from ray import serve

    if not ray.is_initialized():
        return
    if settings.ray_address:
        for app in (deployed or {}).get("applications", []):
            serve.delete(app["name"])
    else:
        serve.shutdown()
    ray.shutdown()
