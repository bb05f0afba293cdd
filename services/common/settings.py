"""Settings every gRPC service shares; each service subclasses with its own env prefix.

Built in ``__main__`` and passed down, never at import time. Secrets are ``SecretStr`` so that they
never reach a log line.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.common.storage import ObjectStore, open_store


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    host: str = "[::]"
    port: int = Field(default=50051, ge=0, le=65535)
    # file:///abs/dir, a plain path (the embedded default), or s3://bucket[/prefix]
    storage_url: str = ".state/objects"
    s3_endpoint: str | None = None  # e.g. http://seaweedfs:8333; None: AWS
    s3_access_key: SecretStr | None = None  # None: boto3's default credential chain
    s3_secret_key: SecretStr | None = None
    s3_region: str | None = None
    token: SecretStr | None = None  # when set, calls must send 'authorization: Bearer <token>'
    max_concurrent_calls: int = Field(default=4, ge=1, le=1024)
    max_message_mb: int = Field(default=64, ge=1, le=2047)
    grace_seconds: float = Field(default=10.0, ge=0)
    device: str = "auto"  # "auto": CUDA when present, else CPU
    log_level: str = "INFO"

    def store(self) -> ObjectStore:
        secret = lambda s: None if s is None else s.get_secret_value()  # noqa: E731
        return open_store(self.storage_url, s3_endpoint=self.s3_endpoint, s3_access_key=secret(self.s3_access_key),
                          s3_secret_key=secret(self.s3_secret_key), s3_region=self.s3_region)

    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token is not None else None
