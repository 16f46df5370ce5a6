"""Settings of the chat frontend process."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from kernel.settings import Settings


class ChatSettings(Settings):
    """Where the chat page listens and which RAG API it talks to."""

    chat_host: str = Field(default="127.0.0.1", description="Address the chat page binds.")
    chat_port: int = Field(default=8501, ge=1, le=65535, description="Port of the chat page.")
    chat_metrics_port: int = Field(
        default=8502, ge=0, le=65535, description="Port of its Prometheus metrics (0: off)."
    )
    api_url: str = Field(
        default="http://127.0.0.1:8000", description="Base URL of the Lakeserve API."
    )
    api_key: SecretStr | None = Field(
        default=None, description="Key the page sends to the API (one of LAKESERVE_API_KEYS)."
    )
    chat_timeout_s: float = Field(
        default=120.0, gt=0, description="Longest wait for an answer to finish."
    )

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"LAKESERVE_API_URL must start with http:// or https://: {value!r}")
        return value.rstrip("/")
