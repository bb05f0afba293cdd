"""Trainer settings, from ``TRAINER_*`` environment variables (e.g. ``TRAINER_PORT``, ``TRAINER_STORAGE_URL``,
``TRAINER_S3_ENDPOINT``, ``TRAINER_S3_ACCESS_KEY``, ``TRAINER_S3_SECRET_KEY``, ``TRAINER_TOKEN``, ``TRAINER_NPROC``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class TrainerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINER_", extra="ignore")

    port: int = Field(default=50051, ge=0, le=65535)
    max_concurrent_calls: int = Field(default=1, ge=1, le=64)  # trainings at once; more get RESOURCE_EXHAUSTED
    # processes per training (data parallel under torchrun, one GPU each on CUDA); 1: in this process
    nproc: int = Field(default=1, ge=1, le=64)
