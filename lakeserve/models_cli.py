"""`lakeserve models`: what the registry and serving say about a registered model, as gates.

`gate` passes (exit 0) when the version holding the alias was trained by the named run, i.e.
that run's candidate was promoted; otherwise it exits 9 and the champion stays. `wait` returns
once serving reports that it serves the version the alias names, on several answers in a row
(each ingress replica follows the alias on its own), and exits 6 when it does not in time.
Airflow's loop runs both after `lakeserve train` (dags/lakeserve_loop.py).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Annotated, Any

import typer

from kernel.console import err, out
from kernel.errors import ConfigError, DataError, GateFailed, WorkloadStuck
from kernel.settings import TrackingSettings

app = typer.Typer(
    help="Gates on a registered model: was a run's candidate promoted, does serving serve it.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
ModelOption = Annotated[str, typer.Option(help="Registered model name.")]
AliasOption = Annotated[str, typer.Option(help="The alias serving follows.")]


@dataclass(frozen=True)
class Sighting:
    """One answer of serving's GET /models for the model: the version it serves and readiness."""

    version: str | None
    ready: bool
    error: str | None = None
    replica: str = ""  # which replica answered (each follows the alias on its own)


def _tracker() -> Any:
    from training.tracking import Tracker

    tracker = Tracker(TrackingSettings())
    tracker.connect()
    return tracker


def _holder(tracker: Any, model: str, alias: str) -> Any:
    from kernel.tracking import unreachable_as_error

    with unreachable_as_error(tracker.uri):
        holder = tracker.alias_holder(model, alias)
    if holder is None:
        raise DataError(f"no version of {model} holds @{alias} in {tracker.uri}")
    return holder


@app.command("gate")
def gate_command(
    run_name: Annotated[str, typer.Option(help="The training run whose candidate must hold it.")],
    model: ModelOption = "fare-regressor",
    alias: AliasOption = "champion",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Pass when the version holding @ALIAS was trained by RUN_NAME; exit 9 when it was not.

    Exit codes: 0 promoted, 9 not promoted (the champion stays), 3 no version holds the alias,
    4 tracking server unreachable.
    """
    from kernel.tracking import unreachable_as_error

    tracker = _tracker()
    holder = _holder(tracker, model, alias)
    with unreachable_as_error(tracker.uri):
        holder_run = tracker.client.get_run(holder.run_id).info.run_name if holder.run_id else None
    passed = holder_run == run_name
    result = {"model": model, "alias": alias, "version": str(holder.version),
              "holder_run": holder_run, "run_name": run_name, "promoted": passed}  # fmt: skip
    if as_json:
        out.print_json(json.dumps(result))
    elif passed:
        out.print(f"{model}@{alias} is v{holder.version}, trained by {run_name}: promoted")
    if not passed:
        raise GateFailed(
            f"{model}@{alias} is v{holder.version} from run {holder_run!r}: "
            f"the candidate of run {run_name!r} was not promoted"
        )


def serving_sighting(
    url: str, model: str, alias: str, api_key: str | None, timeout: float
) -> Sighting:
    """Ask serving's GET /models once what it serves for `model`.

    Raises:
        ConfigError: serving refuses the API key, or answers but does not host the model
            following this alias (waiting would not change that).
    """
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(f"{url.rstrip('/')}/models", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return Sighting(None, False, f"{type(exc).__name__}: {exc}")
    if response.status_code in {401, 403}:
        raise ConfigError(f"{url} refused the API key (LAKESERVE_API_KEY): {response.text[:200]}")
    if response.status_code != 200:
        return Sighting(None, False, f"HTTP {response.status_code}: {response.text[:200]}")
    try:
        hosted = [m for m in response.json() if isinstance(m, dict)]
    except ValueError:
        return Sighting(None, False, f"not JSON: {response.text[:200]}")
    for entry in hosted:
        if entry.get("name") == model and entry.get("alias") == alias:
            version = entry.get("version")
            return Sighting(
                None if version is None else str(version),
                bool(entry.get("ready")),
                replica=str(entry.get("replica") or ""),
            )
    names = sorted(f"{m.get('name')}@{m.get('alias')}" for m in hosted)
    raise ConfigError(f"serving at {url} hosts {names}, not {model}@{alias}")


@dataclass(frozen=True)
class Waited:
    """How a wait ended: the version served, how many answers agreed, how many replicas
    answered, and how long it took."""

    version: str
    agreed: int
    replicas: int
    seconds: float


def wait_until_served(
    wanted: Callable[[], str],
    sight: Callable[[], Sighting],
    *,
    agree: int,
    timeout_s: float,
    interval_s: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    on_sighting: Callable[[str, Sighting], None] | None = None,
) -> Waited:
    """Poll until `agree` answers in a row serve the version `wanted()` names (asked each time:
    a promotion during the wait moves the target), ready, and every replica that answered
    during the wait last answered so (a replica seen on an older version must be seen again).

    Raises:
        WorkloadStuck: the deadline passed first; the message says what serving last answered
            and which replicas lag.
    """
    start = clock()
    streak, counted = 0, None  # answers in a row serving `counted`
    seen: dict[str, str | None] = {}  # replica -> the version it last served, ready
    while True:
        target = wanted()
        last = sight()
        if on_sighting is not None:
            on_sighting(target, last)
        if last.replica:
            seen[last.replica] = last.version if last.ready else None
        if last.ready and last.version == target:
            streak = streak + 1 if counted == target else 1
            counted = target
        else:
            streak = 0
        lagging = sorted(r for r, version in seen.items() if version != target)
        if streak >= agree and not lagging:
            return Waited(target, streak, len(seen), round(clock() - start, 3))
        if clock() - start + interval_s > timeout_s:
            said = last.error or f"version {last.version}, ready={last.ready}"
            behind = f"; replicas not on v{target}: {', '.join(lagging)}" if lagging else ""
            raise WorkloadStuck(
                f"serving did not serve v{target} within {timeout_s:g}s; it last answered: "
                f"{said}{behind}"
            )
        sleep(interval_s)


@app.command("wait")
def wait_command(
    model: ModelOption = "fare-regressor",
    alias: AliasOption = "champion",
    url: Annotated[
        str, typer.Option(help="The Lakeserve API.", envvar="LAKESERVE_SERVING_URL")
    ] = "http://127.0.0.1:8000",
    version: Annotated[
        str | None, typer.Option(help="Wait for this version (default: whatever holds @ALIAS).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds before giving up (exit 6).", min=1)] = 600,
    interval: Annotated[float, typer.Option(help="Seconds between answers.", min=0.1)] = 5.0,
    agree: Annotated[
        int, typer.Option(help="Answers in a row that must agree (one per replica, or more).")
    ] = 3,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Wait until serving at URL serves the version holding @ALIAS (or --version), ready.

    The API key comes from LAKESERVE_API_KEY. Exit codes: 0 served, 6 not within --timeout,
    2 serving refuses the key or does not host the model, 3 no version holds the alias,
    4 tracking server unreachable.
    """
    api_key = os.environ.get("LAKESERVE_API_KEY")
    if version is not None:
        fixed = version

        def wanted() -> str:
            return fixed
    else:
        tracker = _tracker()

        def wanted() -> str:
            return str(_holder(tracker, model, alias).version)

    def sight() -> Sighting:
        return serving_sighting(url, model, alias, api_key, timeout=min(interval * 2, 30.0))

    def show(target: str, seen: Sighting) -> None:
        status.update(f"{model}@{alias}: want v{target}, serving says {seen.error or seen.version}")

    with err.status(f"waiting for {url} to serve {model}@{alias}") as status:
        waited = wait_until_served(
            wanted, sight, agree=agree, timeout_s=timeout, interval_s=interval, on_sighting=show
        )
    result = {"model": model, "alias": alias, "url": url, **asdict(waited)}
    if as_json:
        out.print_json(json.dumps(result))
    else:
        out.print(
            f"{url} serves {model}@{alias} v{waited.version} on every replica that answered "
            f"({waited.replicas}; {waited.seconds:.1f}s)"
        )
