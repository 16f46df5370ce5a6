"""What a serving application hosts and how: the `args` of the Serve application in the config."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ModelSpec(BaseModel):
    """A registered model to host, followed through an alias."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Registered model name.", examples=["fare-regressor"])
    alias: str = Field(default="champion", description="Alias whose version is served.")
    log_sample: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Fraction of this model's requests written to bronze.predictions "
        "(0 turns its request log off).",
    )
    strict_domain: bool = Field(
        default=False,
        description="Refuse (422) rows with a value outside the domain the version was trained "
        "on (a category it never saw, a number outside its range); otherwise they are answered "
        "with a warning in the response and counted.",
    )


class RequestLogOptions(BaseModel):
    """How a replica writes what it served into the lakehouse (bronze request-log tables)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Write the request log at all.")
    rag_sample: float = Field(
        default=1.0, ge=0, le=1, description="Fraction of RAG requests written to bronze."
    )
    batch_rows: int = Field(default=2000, ge=1, description="Rows per Delta commit at most.")
    flush_s: float = Field(
        default=5.0, gt=0, description="Oldest row waits this long before its batch is written."
    )
    max_queue: int = Field(
        default=100_000,
        ge=1,
        description="Rows held per table while the lakehouse is slow or down; past it, new "
        "rows are dropped and counted (lakeserve_request_log_events{outcome=dropped}).",
    )
    drain_s: float = Field(
        default=10.0, ge=0, description="A stopping replica writes what it holds this long."
    )


class ServingOptions(BaseModel):
    """Hosting options, validated when the application is built."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelSpec] = Field(min_length=1)
    verify_artifacts: bool = Field(
        default=True,
        description="Load only versions the promotion gate of `lakeserve train` marked and whose "
        "artifact files hash to the digest their training run recorded; false also hosts "
        "versions registered by other tools, unverified.",
    )
    alias_poll_interval_s: float = Field(
        default=10.0, gt=0, description="How often each replica checks the aliases."
    )
    load_grace_s: float = Field(
        default=120.0,
        gt=0,
        description="A replica without every model loaded this long after start fails Serve's "
        "health check and is replaced.",
    )
    max_batch_size: int = Field(default=64, ge=1, description="Requests predicted together.")
    batch_wait_timeout_s: float = Field(
        default=0.002, ge=0, description="How long a batch waits to fill."
    )
    max_rows_per_request: int = Field(default=10_000, ge=1)
    model_threads: int = Field(
        default=1, ge=1, description="Native threads (OpenMP/BLAS) per replica for predict."
    )
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    rag_max_concurrent: int = Field(
        default=32,
        ge=1,
        description="RAG calls one ingress replica runs at once; more are 503 with Retry-After, "
        "so RAG load never takes the slots model inference needs.",
    )
    request_log: RequestLogOptions = Field(default_factory=RequestLogOptions)
    rag: bool = Field(
        default=False,
        description="Also host the RAG API (/rag, /v1) through the RagServer deployment.",
    )
