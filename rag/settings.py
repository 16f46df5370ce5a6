"""Typed settings for RAG: the vector store, the embedding model, retrieval and the LLM."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator, model_validator

from kernel.settings import Settings

if TYPE_CHECKING:
    from rag.retrieval import Tuning

LOCAL_LLM = "smollm2-135m-instruct"
DEFAULT_EMBEDDING = "all-MiniLM-L6-v2"


class RagSettings(Settings):
    """Where the index lives, how text is chunked and embedded, and which LLM answers."""

    chroma_url: str | None = Field(
        default=None,
        description="Chroma server URL (http://host:port). Unset: embedded Chroma under home.",
    )
    chroma_path: Path | None = Field(
        default=None, description="Embedded Chroma directory. Default: <home>/chroma."
    )
    chroma_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Bound on every call to a Chroma server (connect and read).",
    )
    rag_collection: str = Field(
        default="lakeserve-docs", min_length=3, description="Chroma collection of the index."
    )
    embedding_model: str = Field(
        default=DEFAULT_EMBEDDING,
        description="Embedding model: all-MiniLM-L6-v2 (packaged) or a local directory.",
    )
    embedding_batch_size: int = Field(default=64, ge=1, le=4096)
    embedding_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        default="torch",
        description=(
            "What runs the embedding model: torch (sentence-transformers), onnx (the same "
            "vectors through onnxruntime) or onnx-int8 (quantized weights: another index)."
        ),
    )
    embedding_cache: Path | None = Field(
        default=None, description="Where ONNX exports of the model are kept. Default: <home>/models"
    )
    chunk_size: int = Field(default=800, ge=100, le=8000, description="Characters per chunk.")
    chunk_overlap: int = Field(default=120, ge=0, description="Characters shared by neighbours.")
    rag_k: int = Field(default=5, ge=1, le=50, description="Sources given to the LLM.")
    rag_candidates: int = Field(
        default=30, ge=1, le=500, description="Candidates per retriever before fusion."
    )
    # Measured on the stdlib corpus: on-topic QA questions score >= 0.395, off-topic <= 0.347.
    rag_min_score: float = Field(
        default=0.37,
        ge=-1.0,
        le=1.0,
        description="Relevance floor: best cosine similarity below it means 'not found'.",
    )
    rag_vector_weight: float = Field(
        default=1.5,
        ge=0,
        le=10,
        description="Weight of the vector ranking in the fusion (BM25: 1).",
    )
    rag_fuse_documents: bool = Field(
        default=True, description="Fuse rankings per document (best chunk each), not per chunk."
    )
    rag_deprecated_penalty: float = Field(
        default=0.5, ge=0, le=1, description="Score factor for deprecated modules (distutils...)."
    )
    # Measured (README, RAG quality): stemming lifts BM25 on task-phrased questions but costs
    # hybrid recall on API-naming ones; off by default until both gain.
    rag_stem: bool = Field(default=False, description="BM25 over stemmed words.")
    rag_refresh_s: float = Field(
        default=10.0, gt=0, description="How often a server checks the index for new data."
    )
    answer_mode: Literal["auto", "quoted", "generated"] = Field(
        default="auto",
        description="quoted: answers are sentences of the cited sources, no LLM; generated: "
        "the LLM writes them and a grounding check replaces what the sources do not support; "
        "auto: generated when LAKESERVE_LLM_BASE_URL is set, else quoted.",
    )
    llm_base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible endpoint (vLLM, Ray Serve LLM, Ollama, OpenAI). "
        "Unset: the packaged SmolLM2-135M-Instruct runs in process.",
    )
    llm_model: str = Field(default=LOCAL_LLM, description="Model name sent to the endpoint.")
    llm_api_key: SecretStr = Field(default=SecretStr("unused"), description="Endpoint API key.")
    llm_max_tokens: int = Field(default=256, ge=1, le=8192)
    llm_temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    llm_timeout_s: float = Field(default=60.0, gt=0)
    llm_threads: int = Field(default=2, ge=1, description="CPU threads of the local LLM.")

    rag_trace: bool = Field(
        default=True,
        description="Trace every answer in MLflow Tracing (retrieve, fuse, generate spans) "
        "in the tracking store of MLFLOW_TRACKING_URI.",
    )
    rag_trace_experiment: str = Field(
        default="lakeserve-rag", min_length=1, description="MLflow experiment of the traces."
    )
    rag_trace_sample: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Fraction of answers traced in MLflow. Independent of the OpenTelemetry "
        "sampling of Serve's tracing_config (sampling_ratio, or a client's sampled "
        "traceparent): an answer may have an MLflow trace and no exported spans, or the "
        "reverse.",
    )

    @field_validator("chroma_url", "llm_base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value and urlparse(value).scheme not in ("http", "https"):
            raise ValueError(f"expected an http(s) URL, got {value!r}")
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _overlap_below_size(self) -> RagSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("LAKESERVE_CHUNK_OVERLAP must be smaller than LAKESERVE_CHUNK_SIZE")
        return self

    def tuning(self) -> Tuning:
        """Return the retrieval tuning these settings describe."""
        from rag.retrieval import Tuning  # rag.retrieval -> rag.store -> here

        return Tuning(
            candidates=self.rag_candidates,
            min_similarity=self.rag_min_score,
            vector_weight=self.rag_vector_weight,
            fuse_documents=self.rag_fuse_documents,
            deprecated_penalty=self.rag_deprecated_penalty,
            stem=self.rag_stem,
        )

    @property
    def generates(self) -> bool:
        """Return True when an LLM writes the answers (then checked against the sources)."""
        if self.answer_mode == "auto":
            return self.llm_base_url is not None
        return self.answer_mode == "generated"

    @property
    def embedding_identity(self) -> str:
        """Name the vectors: a collection holds the vectors of one model (and quantization)."""
        if self.embedding_backend == "onnx-int8":
            return f"{self.embedding_model}+onnx-int8"
        return self.embedding_model  # onnx fp32 gives torch's vectors (cosine > 0.99999)

    @property
    def embedding_cache_dir(self) -> Path:
        """Return the directory of ONNX exports (absolute)."""
        return (self.embedding_cache or self.home / "models").resolve()

    @property
    def chroma_dir(self) -> Path:
        """Return the embedded Chroma directory (absolute)."""
        return (self.chroma_path or self.home / "chroma").resolve()

    @property
    def chroma_target(self) -> str:
        """Say where the index is, for logs and errors."""
        return self.chroma_url or str(self.chroma_dir)
