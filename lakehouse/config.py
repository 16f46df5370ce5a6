"""Typed settings for the lakehouse and the MLflow tracking store, read from the environment."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class LakehouseSettings(BaseSettings):
    """Where the lakehouse lives and how to reach it (local disk or S3/MinIO)."""

    model_config = SettingsConfigDict(env_prefix="LAKESERVE_", extra="ignore")

    home: Path = Field(
        default=Path(".lakeserve"),
        description="Root of the embedded defaults: lakehouse, MLflow sqlite store and artifacts.",
    )
    lake_root: str | None = Field(
        default=None,
        description="Lakehouse root: a local path or an s3:// URI. Default: <home>/lake.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint for MinIO or another S3-compatible store."
    )
    s3_access_key_id: SecretStr | None = Field(default=None, description="S3 access key id.")
    s3_secret_access_key: SecretStr | None = Field(default=None, description="S3 secret key.")
    s3_region: str = Field(default="us-east-1", description="S3 region.")
    s3_allow_http: bool = Field(default=False, description="Allow plain-HTTP S3 endpoints.")

    @field_validator("lake_root")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @property
    def root(self) -> str:
        """Return the lakehouse root URI (absolute path for local disk)."""
        if self.lake_root:
            if "://" in self.lake_root:
                return self.lake_root
            return str(Path(self.lake_root).resolve())
        return str((self.home / "lake").resolve())

    @property
    def is_remote(self) -> bool:
        """Return True when the lakehouse lives in an object store."""
        return "://" in self.root

    def storage_options(self) -> dict[str, str]:
        """Return deltalake storage options for the configured object store."""
        if not self.is_remote:
            return {}
        options = {"AWS_REGION": self.s3_region}
        if self.s3_endpoint_url:
            options["AWS_ENDPOINT_URL"] = self.s3_endpoint_url
        if self.s3_access_key_id:
            options["AWS_ACCESS_KEY_ID"] = self.s3_access_key_id.get_secret_value()
        if self.s3_secret_access_key:
            options["AWS_SECRET_ACCESS_KEY"] = self.s3_secret_access_key.get_secret_value()
        if self.s3_allow_http:
            options["AWS_ALLOW_HTTP"] = "true"
        return options


class TrackingSettings(BaseSettings):
    """Where MLflow runs and registered models go: a tracking server, or sqlite under home."""

    model_config = SettingsConfigDict(env_prefix="LAKESERVE_", extra="ignore")

    home: Path = Field(default=Path(".lakeserve"))
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


class RaySettings(BaseSettings):
    """Which Ray runs the distributed work: a local one by default, or a cluster."""

    model_config = SettingsConfigDict(env_prefix="LAKESERVE_", extra="ignore")

    ray_address: str | None = Field(
        default=None, description="Ray cluster to join (e.g. ray://head:10001); local if unset."
    )
    ray_tmpdir: Path = Field(
        default=Path("/tmp/lakeserve-ray"), description="Ray session files (keep the path short)."
    )
