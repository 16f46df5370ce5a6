"""Sentence embeddings through onnxruntime, exported on this machine from the packaged weights.

Why not sentence-transformers' own ONNX backend: it needs optimum-onnx, whose every release pins
transformers<4.58, and we pin transformers 5. The graph is exported here with torch.onnx from the
same Transformer module sentence-transformers loads, and inference repeats what its Transformer,
Pooling and Normalize modules do (tokenizer.json, truncation at max_seq_length, mean or CLS
pooling, L2 norm); tests/rag/test_embeddings.py checks the vectors against sentence-transformers.
`int8` adds onnxruntime's dynamic quantization of the weights: faster, and a different model for
the index (see `embedding_identity`).

The export runs once per model and cache directory (about 3 s, 90 MB; int8 23 MB), under a file
lock so that ingest actors and replicas starting together export it once, and lands by rename so
that a killed export leaves nothing half written.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from kernel.errors import ConfigError
from rag.embeddings import EncoderEmbeddings

SUPPORTED_MODULES = (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"])
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _pipeline(source: Path) -> tuple[str, int]:
    """Return the pooling mode and max_seq_length of a sentence-transformers directory."""
    modules_file = source / "modules.json"
    modules = json.loads(modules_file.read_text()) if modules_file.exists() else []
    types = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if types not in SUPPORTED_MODULES:
        raise ConfigError(
            f"the onnx embedding backend runs Transformer + Pooling (+ Normalize) models; "
            f"{source} has {', '.join(types) or 'no modules.json'}: "
            "set LAKESERVE_EMBEDDING_BACKEND=torch"
        )
    pooling = json.loads((source / modules[1]["path"] / "config.json").read_text())
    if pooling.get("pooling_mode_mean_tokens"):
        mode = "mean"
    elif pooling.get("pooling_mode_cls_token"):
        mode = "cls"
    else:
        raise ConfigError(f"{source}: only mean or CLS pooling runs on the onnx backend")
    config_file = source / "sentence_bert_config.json"
    config = json.loads(config_file.read_text()) if config_file.exists() else {}
    return mode, int(config.get("max_seq_length") or 512)


def _fingerprint(source: Path) -> str:
    """Name of a model's export: its directory, weights' sizes and configuration."""
    digest = hashlib.sha256(str(source.resolve()).encode())
    for path in sorted(source.glob("*")):
        if path.is_file():
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
    digest.update((source / "config.json").read_bytes())
    return f"{source.name}-{digest.hexdigest()[:12]}"


def export(source: Path, cache: Path, int8: bool = False) -> Path:
    """Return the ONNX file of `source` under `cache`, exporting it first if missing."""
    from filelock import FileLock

    target = cache / _fingerprint(source)
    target.mkdir(parents=True, exist_ok=True)
    fp32, quantized = target / "model.onnx", target / "model-int8.onnx"
    wanted = quantized if int8 else fp32
    with FileLock(str(target / ".lock"), timeout=600):
        if not fp32.exists():
            _export_fp32(source, fp32)
        if int8 and not quantized.exists():
            from onnxruntime.quantization import QuantType, quantize_dynamic

            partial = quantized.with_suffix(".partial")
            quantize_dynamic(str(fp32), str(partial), weight_type=QuantType.QInt8)
            os.replace(partial, quantized)
    return wanted


def _export_fp32(source: Path, out: Path) -> None:
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(source), local_files_only=True).eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    ids = torch.ones((2, 8), dtype=torch.int64)
    # A padded row in the sample: the tracer keeps the masked attention path (a mask of ones
    # would let it record "no padding" as a constant).
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "last_hidden_state")}
    partial = out.with_suffix(".partial")
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter (torch.export's needs onnxscript) warns it is legacy, and the
        # tracer about Python branches on shapes; tests compare the vectors with torch's.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Encoder(),
            (ids, mask, torch.zeros_like(ids)),
            str(partial),
            input_names=list(INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    os.replace(partial, out)


class OnnxEmbeddings(EncoderEmbeddings):
    """A sentence-transformers model run by onnxruntime; vectors are L2-normalised."""

    def __init__(
        self,
        source: Path,
        cache: Path,
        batch_size: int = 64,
        threads: int | None = None,
        int8: bool = False,
    ) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        self.pooling, max_tokens = _pipeline(source)
        self.batch_size = batch_size
        self._tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
        self._tokenizer.enable_truncation(max_tokens)
        self._tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(
            str(export(source, cache, int8)), options, providers=["CPUExecutionProvider"]
        )
        self._inputs = {i.name for i in self._session.get_inputs()}
        # onnxruntime runs one call at a time on its threads; a replica's requests take turns.
        self._lock = threading.Lock()
        self.dimensions = int(self.encode(["dimensions"]).shape[1])

    def encode(self, texts: list[str]) -> Any:
        """Return a float32 array of normalised vectors, one row per text.

        Texts run longest first in batches of similar length, so little of a batch is padding.
        """
        order = np.argsort([-len(t) for t in texts], kind="stable")
        out: np.ndarray | None = None
        for start in range(0, len(texts), self.batch_size):
            picked = order[start : start + self.batch_size]
            vectors = self._batch([texts[i] for i in picked])
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[picked] = vectors
        return out if out is not None else np.empty((0, 0), dtype=np.float32)

    def _batch(self, texts: list[str]) -> np.ndarray:
        encoded = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        with self._lock:
            hidden = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})
        states = hidden[0]
        if self.pooling == "cls":
            pooled = states[:, 0]
        else:
            weights = mask[..., None].astype(np.float32)
            pooled = (states * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
