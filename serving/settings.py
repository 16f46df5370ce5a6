"""Settings of the serving process and the Serve config file it deploys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, SecretStr

from kernel.errors import ConfigError
from kernel.settings import RaySettings

DEFAULT_SERVE_CONFIG = Path(__file__).with_name("serve-config.yaml")


class ServingSettings(RaySettings):
    """How `lakeserve serve` runs Ray Serve, and who may call the API."""

    http_host: str = Field(default="127.0.0.1", description="Address the HTTP proxy binds.")
    http_port: int = Field(default=8000, ge=1, le=65535, description="Port of the HTTP API.")
    api_keys: SecretStr | None = Field(
        default=None, description="Comma-separated API keys; when set, non-health routes need one."
    )
    serve_config: Path = Field(
        default=DEFAULT_SERVE_CONFIG, description="Ray Serve config file to deploy."
    )
    haproxy: bool = Field(
        default=True, description="Use Ray Serve's HAProxy ingress instead of the Python proxy."
    )
    metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of Ray's metrics export for a local Ray (every replica's "
        "`ray_lakeserve_*` and Ray Serve's metrics, for Prometheus); a free one if unset.",
    )

    def keys(self) -> list[str]:
        """Return the configured API keys (empty: auth off).

        Raises:
            ConfigError: the variable is set but holds no key; auth must never turn off by a typo.
        """
        if self.api_keys is None:
            return []
        keys = [k.strip() for k in self.api_keys.get_secret_value().split(",") if k.strip()]
        if not keys:
            raise ConfigError(
                "LAKESERVE_API_KEYS is set but holds no key; unset it to turn auth off"
            )
        return keys

    def deploy_config(self) -> dict[str, Any]:
        """Return the Serve config with host and port from these settings."""
        try:
            config = yaml.safe_load(self.serve_config.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"serve config {self.serve_config} not found") from exc
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read serve config {self.serve_config}: {exc}") from exc
        if not isinstance(config, dict) or not config.get("applications"):
            raise ConfigError(f"serve config {self.serve_config} has no applications")
        http = dict(config.get("http_options") or {})
        http.update(host=self.http_host, port=self.http_port)
        return {**config, "http_options": http}
