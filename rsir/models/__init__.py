"""Backbones, picked from an explicit registry by name."""

from __future__ import annotations

from rsir.config import ModelConfig
from rsir.errors import ConfigError
from rsir.models.base import DecodeCache, SequentialRecommender
from rsir.models.bsarec import BSARec
from rsir.models.cl4srec import CL4SRec
from rsir.models.gru4rec import GRU4Rec
from rsir.models.hstu import HSTU
from rsir.models.sasrec import SASRec

MODELS: dict[str, type[SequentialRecommender]] = {
    "sasrec": SASRec,
    "cl4srec": CL4SRec,
    "hstu": HSTU,
    "bsarec": BSARec,
    "gru": GRU4Rec,
}


def build_model(config: ModelConfig, num_items: int) -> SequentialRecommender:
    """A fresh, randomly initialised backbone for a catalogue of ``num_items`` items."""
    if config.name not in MODELS:
        raise ConfigError(f"name: unknown model {config.name!r}; choose from {', '.join(MODELS)}")
    if num_items < 1:
        raise ConfigError(f"num_items must be >= 1, got {num_items}")
    return MODELS[config.name](config, num_items)


__all__ = ["MODELS", "DecodeCache", "SequentialRecommender", "build_model"]
