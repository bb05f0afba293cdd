"""Self-describing checkpoints: the file alone rebuilds the model.

A checkpoint holds the format version, the backbone name and its ``ModelConfig``, the catalogue
size, the training config, the dataset version it was fitted on, its metrics and the uncompiled
module's ``state_dict``. It is read with ``torch.load(weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from rsir.config import ModelConfig, TrainConfig, from_dict, to_dict
from rsir.errors import RsirError
from rsir.models import SequentialRecommender, build_model

FORMAT = "rsir-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RsirError):
    """A checkpoint that is missing, truncated, tampered with or of another format."""


@dataclass(frozen=True)
class CheckpointInfo:
    model_config: ModelConfig
    num_items: int
    train_config: TrainConfig | None
    dataset_version: str | None
    metrics: dict[str, Any]


def checkpoint_bytes(model: SequentialRecommender, train_config: TrainConfig | None = None,
                     dataset_version: str | None = None, metrics: dict[str, Any] | None = None) -> bytes:
    """Serialise ``model`` with everything needed to rebuild it."""
    module = getattr(model, "_orig_mod", model)  # never store a torch.compile wrapper's names
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": module.config.name,
        "model_config": to_dict(module.config),
        "num_items": module.num_items,
        "train_config": None if train_config is None else to_dict(train_config),
        "dataset_version": dataset_version,
        "metrics": dict(metrics or {}),
        "state_dict": {k: v.detach().cpu() for k, v in module.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save_checkpoint(path: str | Path, model: SequentialRecommender, train_config: TrainConfig | None = None,
                    dataset_version: str | None = None, metrics: dict[str, Any] | None = None) -> Path:
    """Write atomically: a reader never sees a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(checkpoint_bytes(model, train_config, dataset_version, metrics))
    tmp.replace(path)
    return path


def load_checkpoint(source: str | Path | bytes | BinaryIO,
                    device: torch.device | str = "cpu") -> tuple[SequentialRecommender, CheckpointInfo]:
    """Rebuild the model (in eval mode, on ``device``) and its description from a checkpoint."""
    name = "checkpoint"
    if isinstance(source, str | Path):
        name = str(source)
        if not Path(source).is_file():
            raise CheckpointError(f"{name}: no such file")
        source = Path(source).read_bytes()
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        payload = torch.load(stream, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated zip, bad magic, unpickling refused: all mean "corrupt"
        raise CheckpointError(f"{name}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{name}: not an rsir checkpoint")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{name}: format version {payload.get('format_version')} is not supported "
                              f"(this build reads {FORMAT_VERSION})")
    try:
        model_config = from_dict(ModelConfig, payload["model_config"])
        train_cfg = payload.get("train_config")
        info = CheckpointInfo(model_config, int(payload["num_items"]),
                              None if train_cfg is None else from_dict(TrainConfig, train_cfg),
                              payload.get("dataset_version"), dict(payload.get("metrics") or {}))
        model = build_model(model_config, info.num_items)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, RsirError) as exc:
        raise CheckpointError(f"{name}: inconsistent checkpoint ({exc})") from None
    return model.to(device).eval(), info
