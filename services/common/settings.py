"""Settings every gRPC service shares; each service subclasses with its own env prefix.

Built in ``__main__`` and passed down, never at import time. Secrets are ``SecretStr`` so that they
never reach a log line.
"""

from __future__ import annotations

import torch
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from rsir.resources import total_memory_bytes
from rsir.validation import DEFAULT_MAX_ITEMS
from services.common.storage import ObjectStore, open_store

MEMORY_SHARE = 0.5  # of the machine, by default: a trainer and a generator often share one host


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
    # catalogue size a dataset may declare (its embedding table is items x dim); more is INVALID_ARGUMENT
    max_items: int = Field(default=DEFAULT_MAX_ITEMS, ge=1)
    # MB the process may hold, model and caches included; calls that would need more are refused with
    # RESOURCE_EXHAUSTED. None: half the machine's memory (or of its cgroup limit)
    memory_budget_mb: int | None = Field(default=None, ge=64)
    torch_threads: int = Field(default=0, ge=0, le=1024)  # intra-op threads of each call; 0: torch's default

    def memory_budget_bytes(self) -> int:
        if self.memory_budget_mb is not None:
            return self.memory_budget_mb * 2**20
        return int(total_memory_bytes() * MEMORY_SHARE)

    def memory_budget_name(self) -> str:
        """The environment variable that sets the budget, for the messages that name it."""
        return f"{self.model_config.get('env_prefix', '')}MEMORY_BUDGET_MB"

    def threads(self) -> int:
        return self.torch_threads or torch.get_num_threads()

    def store(self) -> ObjectStore:
        secret = lambda s: None if s is None else s.get_secret_value()  # noqa: E731
        return open_store(self.storage_url, s3_endpoint=self.s3_endpoint, s3_access_key=secret(self.s3_access_key),
                          s3_secret_key=secret(self.s3_secret_key), s3_region=self.s3_region)

    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token is not None else None
