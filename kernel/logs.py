"""Structured logging for every command: human-readable on a terminal, JSON lines in a cluster."""

from __future__ import annotations

import logging
import sys
from typing import Literal

import structlog
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class LogSettings(BaseSettings):
    """How logs are rendered and filtered."""

    model_config = SettingsConfigDict(env_prefix="LAKESERVE_LOG_", extra="ignore")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="Minimum level of log events."
    )
    format: Literal["console", "json"] = Field(
        default="console", description="console for people, json for log collectors."
    )


class _Stderr:
    """Whatever sys.stderr is at write time (it is swapped by test capture and redirects)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(settings: LogSettings | None = None, colors: bool | None = None) -> None:
    """Route structlog and stdlib logging to stderr in the configured format.

    `colors` defaults to whether stderr is a terminal; pass False where stderr is a log file
    that claims to be one (Ray workers).
    """
    settings = settings or LogSettings()
    level = logging.getLevelName(settings.level)
    renderer: structlog.typing.Processor
    if settings.format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        use_colors = sys.stderr.isatty() if colors is None else colors
        renderer = structlog.dev.ConsoleRenderer(colors=use_colors)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_Stderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(_Stderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(processors=[*shared, renderer], foreign_pre_chain=[])
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Third-party libraries are chatty at INFO (alembic migrations, MLflow hints): keep them quiet.
    root.setLevel(max(level, logging.WARNING))
    # Some set their own level below the root's (bm25s logs at DEBUG, Ray Data at INFO).
    for name in ("bm25s", "ray.data", "chromadb", "sentence_transformers", "httpx"):
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
