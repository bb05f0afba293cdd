"""Generator settings, from ``GENERATOR_*`` environment variables (e.g. ``GENERATOR_PORT``,
``GENERATOR_STORAGE_URL``, ``GENERATOR_S3_ENDPOINT``, ``GENERATOR_DEVICE``, ``GENERATOR_PRELOAD``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class GeneratorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GENERATOR_", extra="ignore")

    port: int = Field(default=50052, ge=0, le=65535)
    checkpoint_cache_size: int = Field(default=4, ge=1, le=1024)  # loaded models kept (LRU)
    dataset_cache_size: int = Field(default=2, ge=1, le=1024)  # loaded dataset versions kept (LRU)
    preload: list[str] = Field(default_factory=list)  # checkpoint URIs to load before SERVING (JSON list)
    max_items_per_message: int = Field(default=1 << 20, ge=1)  # larger batches are split over several messages
