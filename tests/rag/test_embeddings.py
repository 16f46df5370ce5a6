"""The onnxruntime backend: the vectors of sentence-transformers, exported once, on this machine."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from kernel.errors import ConfigError
from rag.embeddings import LocalEmbeddings, model_path, open_embeddings
from rag.onnx_embeddings import OnnxEmbeddings, export
from rag.settings import DEFAULT_EMBEDDING, RagSettings

TEXTS = [
    "",
    "How do I read a file line by line?",
    "asyncio.gather(*aws, return_exceptions=False) runs awaitables concurrently. " * 30,  # cut
    "pathlib: Path.rglob yields every matching file below a directory",
    "Übergröße: naïve café ☕ — unicode survives the tokenizer",
    "x",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="module")
def torch_vectors() -> np.ndarray:
    return np.asarray(LocalEmbeddings(DEFAULT_EMBEDDING, 4).encode(TEXTS))


def test_onnx_vectors_are_sentence_transformers_vectors(
    cache: Path, torch_vectors: np.ndarray
) -> None:
    model = OnnxEmbeddings(model_path(DEFAULT_EMBEDDING), cache, batch_size=4)
    vectors = model.encode(TEXTS)
    assert vectors.shape == torch_vectors.shape == (len(TEXTS), 384)
    assert vectors.dtype == np.float32
    cosine = (vectors * torch_vectors).sum(axis=1)
    assert cosine.min() > 0.9999, cosine
    # Order is the caller's, whatever order the length-sorted batches ran in.
    single = np.asarray([model.embed_query(t) for t in TEXTS])
    assert np.allclose(single, vectors, atol=1e-4)
    assert model.dimensions == 384


def test_the_export_is_made_once_and_reused(cache: Path) -> None:
    source = model_path(DEFAULT_EMBEDDING)
    first = export(source, cache)
    stamp = first.stat().st_mtime_ns
    assert export(source, cache) == first and first.stat().st_mtime_ns == stamp
    assert not list(first.parent.glob("*.partial"))


def test_int8_is_close_but_another_index(cache: Path, torch_vectors: np.ndarray) -> None:
    settings = RagSettings(embedding_backend="onnx-int8", embedding_cache=cache)
    model = open_embeddings(settings, batch_size=4)
    assert isinstance(model, OnnxEmbeddings)
    cosine = (model.encode(TEXTS) * torch_vectors).sum(axis=1)
    assert cosine.min() > 0.8, cosine
    assert settings.embedding_identity == f"{DEFAULT_EMBEDDING}+onnx-int8"
    assert RagSettings(embedding_backend="onnx").embedding_identity == DEFAULT_EMBEDDING


def test_a_model_with_other_modules_is_refused_with_the_way_out(tmp_path: Path) -> None:
    source = tmp_path / "dense-model"
    shutil.copytree(model_path(DEFAULT_EMBEDDING), source)
    modules = json.loads((source / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense",
                       "type": "sentence_transformers.models.Dense"})  # fmt: skip
    (source / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match="Transformer, Pooling, Dense, Normalize") as raised:
        OnnxEmbeddings(source, tmp_path / "cache")
    assert "LAKESERVE_EMBEDDING_BACKEND=torch" in str(raised.value)
    assert raised.value.exit_code == 2


class Flaky:
    """An embedder that fails on its `fail_at`-th batch."""

    def __init__(self, fail_at: int) -> None:
        self.calls, self.fail_at = 0, fail_at

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("embedder died")
        return np.ones((len(texts), 3), dtype=np.float32)


def test_in_process_embedding_overlaps_writes_and_hands_its_error_to_the_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import rag.embeddings
    from kernel.settings import RaySettings
    from rag.ingest import _embed_in_process

    items = [{"id": f"c{i}", "text": "t" * i} for i in range(10)]
    flaky = Flaky(fail_at=3)
    monkeypatch.setattr(rag.embeddings, "open_embeddings", lambda *_a, **_k: flaky)
    batches = _embed_in_process(items, RagSettings(), RaySettings(), 4)
    ids, vectors = next(batches)
    assert ids == ["c0", "c1", "c2", "c3"] and vectors.shape == (4, 3)
    assert next(batches)[0] == ["c4", "c5", "c6", "c7"]
    with pytest.raises(RuntimeError, match="embedder died"):
        next(batches)

    # A writer that stops early (Chroma down) leaves no embedding thread behind.
    import threading

    monkeypatch.setattr(rag.embeddings, "open_embeddings", lambda *_a, **_k: Flaky(fail_at=0))
    many = [{"id": f"c{i}", "text": "t"} for i in range(400)]
    batches = _embed_in_process(many, RagSettings(), RaySettings(), 4)
    next(batches)
    batches.close()
    deadline = time.monotonic() + 5
    while any(t.name == "embed" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "embed" for t in threading.enumerate())
