"""Typed settings of the lakehouse: where its tables live (local disk or S3/MinIO)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator

from kernel.settings import Settings


class LakehouseSettings(Settings):
    """Where the lakehouse lives and how to reach it (local disk or S3/MinIO)."""

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
