"""The settings base every component's settings derive from, and the MLflow and Ray settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Read from LAKESERVE_* variables; `home` roots every embedded default."""

    model_config = SettingsConfigDict(env_prefix="LAKESERVE_", extra="ignore")

    home: Path = Field(
        default=Path(".lakeserve"),
        description="Root of the embedded defaults: lakehouse, MLflow sqlite store and "
        "artifacts, embedded Chroma.",
    )


class TrackingSettings(Settings):
    """Where MLflow runs and registered models go: a tracking server, or sqlite under home."""

    tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "LAKESERVE_TRACKING_URI"),
        description="MLflow tracking URI. Default: sqlite:///<home>/mlflow.db.",
    )
    tracking_timeout_s: float = Field(
        default=10.0, gt=0, description="Seconds to wait for a tracking server's /health."
    )

    @property
    def uri(self) -> str:
        """Return the tracking URI, defaulting to the embedded sqlite store."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def is_server(self) -> bool:
        """Return True when tracking goes to an HTTP(S) server."""
        return self.uri.startswith(("http://", "https://"))

    @property
    def artifact_root(self) -> Path:
        """Return where artifacts go when tracking is the embedded sqlite store."""
        return (self.home / "mlartifacts").resolve()


class RaySettings(Settings):
    """Which Ray runs the distributed work: a local one by default, or a cluster."""

    ray_address: str | None = Field(
        default=None, description="Ray cluster to join (e.g. ray://head:10001); local if unset."
    )
    ray_tmpdir: Path = Field(
        default=Path("/tmp/lakeserve-ray"), description="Ray session files (keep the path short)."
    )
