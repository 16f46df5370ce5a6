"""What ties a served model to the training run that made it: a digest of its artifact files.

Training records the digest as a run parameter (MLflow refuses to change a logged parameter) and
marks each version with the promotion gate's decision; serving loads a version only when it
carries that mark and the files it downloaded hash to the recorded digest. A version registered
by hand, or whose artifact was replaced in the store afterwards, is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

DIGEST_PARAM = "model.artifact_digest"
GATE_TAG = "promotion.decision"
_CHUNK = 1 << 20


def artifact_digest(root: Path) -> str:
    """Return `sha256:<hex>` over every file under `root`: relative path, size, content.

    Paths are sorted and taken relative to `root`, so the same files give the same digest
    wherever they were downloaded to; an added, removed, renamed or changed file changes it.
    """
    outer = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file())
    for path in files:
        inner = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                inner.update(chunk)
        relative = path.relative_to(root).as_posix()
        outer.update(f"{relative}\0{path.stat().st_size}\0{inner.hexdigest()}\n".encode())
    return f"sha256:{outer.hexdigest()}"


@contextlib.contextmanager
def downloaded_version(name: str, version: str) -> Iterator[tuple[Path, str]]:
    """Download a registered version's artifact files into a temporary directory, as serving
    loads them; yield (directory, digest). Training records that digest, serving compares it."""
    import mlflow  # here: importing this module stays cheap (serving, the CLI)

    with tempfile.TemporaryDirectory(prefix="lakeserve-model-") as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=tmp
            )
        )
        yield local, artifact_digest(local)
