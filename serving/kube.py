"""Keep the KubeRay RayService's serveConfigV2 equal to the local Serve config.

`python -m serving.kube` rewrites the block in k8s/base/serving/rayservice.yaml from
serving/serve-config.yaml; `--check` exits 1 when they differ (the tests run the same check).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

from serving.settings import DEFAULT_SERVE_CONFIG

RAYSERVICE = Path(__file__).parents[1] / "k8s" / "base" / "serving" / "rayservice.yaml"
KEY = "  serveConfigV2: |"
INDENT = "    "


def serve_config_v2(source: Path = DEFAULT_SERVE_CONFIG) -> str:
    """Return the Serve config as the RayService embeds it: listening on every interface."""
    config: dict[str, Any] = yaml.safe_load(source.read_text())
    config["http_options"] = {**config.get("http_options", {}), "host": "0.0.0.0", "port": 8000}
    return yaml.safe_dump(config, sort_keys=False)


def embedded(manifest: str) -> str:
    """Return the serveConfigV2 text embedded in a RayService manifest."""
    return str(yaml.safe_load(manifest)["spec"]["serveConfigV2"])


def with_config(manifest: str, config: str) -> str:
    """Return the manifest with its serveConfigV2 block replaced by `config`."""
    lines = manifest.splitlines()
    start = lines.index(KEY) + 1
    end = start
    while end < len(lines) and (not lines[end].strip() or lines[end].startswith(INDENT)):
        end += 1
    block = [INDENT + line if line else line for line in config.splitlines()]
    return "\n".join([*lines[:start], *block, *lines[end:]]) + "\n"


def main(argv: list[str]) -> int:
    manifest = RAYSERVICE.read_text()
    expected = serve_config_v2()
    if "--check" in argv:
        if embedded(manifest) != expected:
            sys.stderr.write(f"{RAYSERVICE} is stale: run `python -m serving.kube`\n")
            return 1
        return 0
    RAYSERVICE.write_text(with_config(manifest, expected))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
