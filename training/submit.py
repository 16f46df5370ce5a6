"""Training as a Kubernetes Job: the manifest, and submitting/following it with the API client.

The Job runs the same entrypoint as a laptop (`lakeserve train --config FILE`); the config file
travels in a ConfigMap next to the Job, so any local file can be submitted.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from kernel.errors import ConfigError, Upstream, WorkloadStuck
from training.config import load_config
from training.models import validate

CONFIG_DIR = "/etc/lakeserve/train"
NAMESPACE = "lakeserve-jobs"
IMAGE = "ghcr.io/lakeserve/lakeserve:0.1.0"
CONTAINER = "train"
# Exit codes of `lakeserve train` that no retry can fix: bad config (2), data problem (3).
PERMANENT_EXIT_CODES = [2, 3]
POLL_S = 2.0
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
# Waiting reasons of a container that will not start by itself, and how long each may last
# before --watch gives up: a back-off means pulling already failed; a missing ConfigMap or
# Secret key may still be created by someone else, so it gets a minute.
STUCK_AFTER_S = {
    "ImagePullBackOff": 0.0,
    "ErrImageNeverPull": 0.0,
    "InvalidImageName": 0.0,
    "CreateContainerConfigError": 60.0,
}
# Linter findings that do not apply, with the reason (checkov reads these annotations).
CHECKOV_SKIPS = {
    "checkov.io/skip1": "CKV_K8S_43=The image is built and tagged per release; pass --image "
    "with a digest to pin it.",
    "checkov.io/skip2": "CKV_K8S_35=Settings, secrets included, are read from the environment "
    "(pydantic-settings); only this container gets the S3 keys.",
    "checkov.io/skip3": "CKV2_K8S_6=The lakeserve-jobs namespace has default-deny NetworkPolicies "
    "(k8s/base/jobs/network-policies.yaml) that select every pod.",
}


@dataclass
class JobSpec:
    """What to train and where: a config file plus the knobs of the Job."""

    config: Path
    overrides: list[str] = field(default_factory=list)
    name: str | None = None
    namespace: str = NAMESPACE
    image: str = IMAGE
    pull_policy: str = "Always"
    cpu: str = "2"
    memory: str = "4Gi"
    backoff_limit: int = 3
    deadline_s: int = 7200
    ttl_s: int = 86400


def job_name(spec: JobSpec) -> str:
    """Return the Job name: given, or train-<config stem>-<UTC time>, DNS-1123 and short."""
    if spec.name:
        name = spec.name
    else:
        stem = re.sub(r"[^a-z0-9-]+", "-", spec.config.stem.lower()).strip("-") or "config"
        name = f"train-{stem[:30]}-{datetime.now(UTC):%Y%m%d%H%M%S}"
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?", name):
        raise ConfigError(
            f"invalid Job name {name!r}: lowercase letters, digits and '-', at most 52 characters"
        )
    return name


def manifests(spec: JobSpec) -> list[dict[str, Any]]:
    """Return [ConfigMap, Job] for `kubectl create -f`; the config is validated first."""
    # A bad config or hyperparameter fails here, not minutes later in the cluster.
    validate(load_config(spec.config, spec.overrides).model)
    if spec.pull_policy not in PULL_POLICIES:
        raise ConfigError(
            f"invalid image pull policy {spec.pull_policy!r}: one of {', '.join(PULL_POLICIES)}"
        )
    name = job_name(spec)
    text = spec.config.read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    labels = {
        "app.kubernetes.io/name": "lakeserve-train",
        "app.kubernetes.io/part-of": "lakeserve",
        "lakeserve.io/config": spec.config.name,
    }
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{name}-config",
            "namespace": spec.namespace,
            "labels": labels,
            "annotations": {"lakeserve.io/config-sha256": digest},
        },
        "data": {"config.yaml": text},
    }
    args = ["train", "--config", f"{CONFIG_DIR}/config.yaml", "--json", "--run-name", name]
    for override in spec.overrides:
        args += ["--set", override]
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": spec.namespace,
            "labels": labels,
            "annotations": CHECKOV_SKIPS,
        },
        "spec": {
            "backoffLimit": spec.backoff_limit,
            "activeDeadlineSeconds": spec.deadline_s,
            "ttlSecondsAfterFinished": spec.ttl_s,
            "podFailurePolicy": {
                "rules": [
                    {
                        # Bad config or data: fail the Job at once, retries cannot help.
                        "action": "FailJob",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": PERMANENT_EXIT_CODES,
                        },
                    },
                    {
                        # Evictions, preemption, node drains: retry without counting.
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    },
                ]
            },
            "template": {
                "metadata": {"labels": labels},
                "spec": pod_spec(spec, name, args),
            },
        },
    }
    return [config_map, job]


def pod_spec(spec: JobSpec, name: str, args: list[str]) -> dict[str, Any]:
    """Return the training pod: restricted security, settings from ConfigMap and Secret."""
    return {
        "restartPolicy": "Never",
        "serviceAccountName": "lakeserve-train",
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": CONTAINER,
                "image": spec.image,
                "imagePullPolicy": spec.pull_policy,
                "args": args,
                # MLflow's trainer identity (MLFLOW_TRACKING_USERNAME/PASSWORD): registers versions
                # and moves aliases; serving has a read-only one.
                "envFrom": [
                    {"configMapRef": {"name": "lakeserve-config"}},
                    {"secretRef": {"name": "mlflow-trainer"}},
                ],
                "env": [
                    {"name": "HOME", "value": "/tmp"},
                    *(
                        {
                            "name": key,
                            "valueFrom": {"secretKeyRef": {"name": "lakeserve-s3", "key": key}},
                        }
                        for key in ("LAKESERVE_S3_ACCESS_KEY_ID", "LAKESERVE_S3_SECRET_ACCESS_KEY")
                    ),
                ],
                "resources": {
                    "requests": {"cpu": spec.cpu, "memory": spec.memory},
                    "limits": {"cpu": spec.cpu, "memory": spec.memory},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "data", "mountPath": "/data"},
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": f"{name}-config"}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "data", "emptyDir": {}},
        ],
    }


class _Dumper(yaml.SafeDumper):
    """Plain YAML for kubectl: no anchors, multi-line strings as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """Return the objects as a multi-document YAML stream."""
    return yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False)


class Submitter:
    """Creates the Job and its ConfigMap, then follows the Job to its end."""

    def __init__(self, namespace: str, context: str | None = None) -> None:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        try:
            try:
                config.load_incluster_config()
            except ConfigException:
                config.load_kube_config(context=context)
        except (ConfigException, FileNotFoundError, OSError) as exc:
            raise ConfigError(
                f"no Kubernetes configuration ({exc}); set KUBECONFIG or use --dry-run"
            ) from exc
        self.namespace = namespace
        # Any: the client's models are Optional everywhere; what we read is checked at runtime.
        self.batch: Any = client.BatchV1Api()
        self.core: Any = client.CoreV1Api()

    def create(self, objects: list[dict[str, Any]]) -> str:
        """Create the Job, then its ConfigMap owned by the Job (deleted with it).

        If the ConfigMap cannot be created the Job is deleted again, so a failed submission
        leaves nothing behind.
        """
        config_map, job = objects
        with _api_errors("Kubernetes refused the Job"):
            created = self.batch.create_namespaced_job(self.namespace, job)
        name = str(created.metadata.name)
        config_map["metadata"]["ownerReferences"] = [
            {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": created.metadata.uid}
        ]
        try:
            with _api_errors("Kubernetes refused the Job's ConfigMap"):
                self.core.create_namespaced_config_map(self.namespace, config_map)
        except Upstream as exc:
            raise Upstream(f"{exc}; {self._delete(name)}") from exc
        return name

    def _delete(self, name: str) -> str:
        """Delete Job NAME (its pods with it); return what happened, for the error message."""
        try:
            with _api_errors("could not delete it"):
                self.batch.delete_namespaced_job(
                    name, self.namespace, propagation_policy="Background"
                )
        except Upstream as exc:
            return f"Job {name} is left behind, {exc}"
        return f"Job {name} deleted again"

    def follow(
        self, name: str, emit: Callable[[str], None], clock: Callable[[], float] = time.monotonic
    ) -> int:
        """Stream the pods' logs until the Job ends; return the last pod's exit code (0 ok).

        Raises WorkloadStuck when a pod waits for a reason that does not go away by itself
        (see STUCK_AFTER_S): watching on would only end at the Job's deadline.
        """
        seen: set[str] = set()
        waiting_since: dict[tuple[str, str], float] = {}
        while True:
            with _api_errors("Kubernetes API error while following the Job"):
                job = self.batch.read_namespaced_job_status(name, self.namespace)
                pods = self.core.list_namespaced_pod(
                    self.namespace, label_selector=f"batch.kubernetes.io/job-name={name}"
                ).items
            for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp):
                if pod.status.phase in ("Pending", None):
                    self._check_waiting(name, pod, waiting_since, clock())
                    continue
                if pod.metadata.name in seen:
                    continue
                seen.add(pod.metadata.name)
                emit(f"--- pod {pod.metadata.name}")
                with _api_errors("Kubernetes API error while streaming logs"):
                    stream = self.core.read_namespaced_pod_log(
                        pod.metadata.name, self.namespace, follow=True, _preload_content=False
                    )
                    for line in stream.stream():
                        emit(line.decode(errors="replace").rstrip("\n"))
            conditions = {c.type: c for c in job.status.conditions or [] if c.status == "True"}
            if "Complete" in conditions:
                return 0
            if "Failed" in conditions:
                emit(f"Job failed: {conditions['Failed'].reason}: {conditions['Failed'].message}")
                return _exit_code(pods) or 1
            time.sleep(POLL_S)

    def _check_waiting(
        self, job: str, pod: Any, since: dict[tuple[str, str], float], now: float
    ) -> None:
        for status in pod.status.container_statuses or []:
            waiting = status.state.waiting if status.state else None
            if waiting is None or waiting.reason not in STUCK_AFTER_S:
                continue
            reason = waiting.reason
            first = since.setdefault((pod.metadata.name, reason), now)
            if now - first >= STUCK_AFTER_S[reason]:
                raise WorkloadStuck(
                    f"pod {pod.metadata.name} cannot start: {reason}: {waiting.message or ''}"
                    f"; the Job is left as it is (kubectl -n {self.namespace} delete job {job})"
                )


@contextmanager
def _api_errors(what: str) -> Iterator[None]:
    """Turn the client's API and transport errors into Upstream (exit 5) with `what` first."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        raise Upstream(f"{what}: {exc.status} {exc.reason}: {exc.body}") from exc
    except HTTPError as exc:
        raise Upstream(f"{what}: Kubernetes API unreachable: {exc}") from exc


def _exit_code(pods: list[Any]) -> int | None:
    for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp, reverse=True):
        for status in pod.status.container_statuses or []:
            terminated = status.state.terminated if status.state else None
            if terminated is not None and terminated.exit_code:
                return int(terminated.exit_code)
    return None
