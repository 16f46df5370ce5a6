"""The artifact digest: same files anywhere give the same digest; any change to them does not."""

from __future__ import annotations

import shutil
from pathlib import Path

from kernel.integrity import artifact_digest


def model_dir(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "model.pkl").write_bytes(b"\x80\x04pickle-bytes")
    (root / "sub" / "extra.json").write_text("{}")
    return root


def test_digest_depends_on_the_files_not_where_they_are(tmp_path: Path) -> None:
    first = model_dir(tmp_path / "a")
    second = shutil.copytree(first, tmp_path / "elsewhere" / "b")
    assert artifact_digest(first) == artifact_digest(second)
    assert artifact_digest(first).startswith("sha256:") and len(artifact_digest(first)) == 71


def test_every_kind_of_change_changes_the_digest(tmp_path: Path) -> None:
    original = artifact_digest(model_dir(tmp_path / "m"))
    digests = {original}
    root = tmp_path / "m"
    (root / "model.pkl").write_bytes(b"\x80\x04pickle-bytez")  # same size, one byte differs
    digests.add(artifact_digest(root))
    (root / "model.pkl").write_bytes(b"\x80\x04pickle-bytes")
    assert artifact_digest(root) == original  # restored: the same again
    (root / "sub" / "extra.json").rename(root / "sub" / "renamed.json")
    digests.add(artifact_digest(root))
    (root / "sub" / "renamed.json").rename(root / "extra.json")  # moved up a directory
    digests.add(artifact_digest(root))
    (root / "added.py").write_text("print('hi')")
    digests.add(artifact_digest(root))
    (root / "MLmodel").unlink()
    digests.add(artifact_digest(root))
    assert len(digests) == 6
