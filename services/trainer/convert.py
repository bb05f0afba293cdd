"""Trainer protos ↔ core and domain types (pure functions, round-trip tested)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from rsir.config import ModelConfig, TrainConfig, to_dict
from rsir.errors import ConfigError
from rsir.models import MODELS
from rsir.training import EpochReport
from rsir_api.v1 import common_pb2, trainer_pb2
from services.common.artifacts import BlobRef, DatasetRef
from services.common.convert import (
    blob_ref_from_message,
    blob_ref_to_message,
    config_from_message,
    config_to_message,
    dataset_ref_from_message,
    dataset_ref_to_message,
)

JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True)
class TrainJob:
    """A validated ``TrainRequest``."""

    job_id: str
    dataset: DatasetRef
    model: ModelConfig
    train: TrainConfig
    init: BlobRef | None = None  # continue this checkpoint with the real-data stage alone
    warm_start: bool = False  # with init: the whole job from its weights instead

    def fingerprint(self) -> str:
        """What makes two requests the same job (the device and the dataset's URI do not)."""
        train = {k: v for k, v in to_dict(self.train).items() if k != "device"}
        spec: dict[str, Any] = {"dataset": self.dataset.version, "model": to_dict(self.model), "train": train,
                "init": None if self.init is None else self.init.sha256}
        if self.warm_start:  # only when set, so that the jobs recorded before it keep their fingerprints
            spec["warm_start"] = True
        text = json.dumps(spec, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class TrainOutcome:
    """A finished job, as streamed in ``TrainResult`` and stored in the job record."""

    job_id: str
    checkpoint: BlobRef
    test: dict[str, float]
    valid: dict[str, float]
    best_epoch: int
    epochs: int
    stopped_by: str
    seconds: float
    seconds_per_epoch: float
    peak_memory_mb: float
    dataset_version: str
    finetune_kept: bool | None = None  # None: no real-data stage ran (TrainConfig.finetune_real)
    insertion_sequences: int = 0  # drawn by TrainConfig.insertion_ratio beside the dataset's own
    ranks: BlobRef | None = None  # per-user 0-based test ranks (int32 .npy), for paired tests
    reused: bool = field(default=False, compare=False)


def train_job(request: trainer_pb2.TrainRequest, default_device: str = "auto") -> TrainJob:
    if not JOB_ID.fullmatch(request.job_id):
        raise ConfigError(f"job_id: must be 1-128 characters from [A-Za-z0-9._-] starting with a letter or digit, "
                          f"got {request.job_id!r}")
    model = config_from_message(ModelConfig, request.model, "model")
    if model.name not in MODELS:
        raise ConfigError(f"model.name: unknown model {model.name!r}; choose from {', '.join(MODELS)}")
    train = config_from_message(TrainConfig, request.train, "train")
    if not request.train.HasField("device"):
        train = dataclasses.replace(train, device=default_device)
    init = (blob_ref_from_message(request.init_checkpoint, "init_checkpoint")
            if request.HasField("init_checkpoint") else None)
    if request.warm_start and init is None:
        raise ConfigError("warm_start: needs init_checkpoint, the weights to start from")
    return TrainJob(request.job_id, dataset_ref_from_message(request.dataset), model, train, init, request.warm_start)


def train_request(job_id: str, dataset: DatasetRef, model: ModelConfig, train: TrainConfig,
                  init: BlobRef | None = None, warm_start: bool = False) -> trainer_pb2.TrainRequest:
    request = trainer_pb2.TrainRequest(job_id=job_id, dataset=dataset_ref_to_message(dataset),
                                       model=config_to_message(model, common_pb2.ModelSpec),
                                       train=config_to_message(train, trainer_pb2.TrainSpec))
    if init is not None:
        request.init_checkpoint.CopyFrom(blob_ref_to_message(init))
    request.warm_start = warm_start
    return request


def progress_response(report: EpochReport) -> trainer_pb2.TrainResponse:
    return trainer_pb2.TrainResponse(progress=trainer_pb2.TrainProgress(
        epoch=report.epoch, loss=report.loss, valid=report.valid, seconds=report.seconds,
        best_epoch=report.best_epoch, improved=report.improved))


def report_from_message(message: trainer_pb2.TrainProgress) -> EpochReport:
    return EpochReport(message.epoch, message.loss, dict(message.valid), message.seconds, message.best_epoch,
                       message.improved)


def result_response(outcome: TrainOutcome) -> trainer_pb2.TrainResponse:
    values = {f.name: getattr(outcome, f.name) for f in dataclasses.fields(outcome)}
    values["checkpoint"] = blob_ref_to_message(outcome.checkpoint)
    values["ranks"] = None if outcome.ranks is None else blob_ref_to_message(outcome.ranks)
    return trainer_pb2.TrainResponse(result=trainer_pb2.TrainResult(**values))


def outcome_from_message(message: trainer_pb2.TrainResult) -> TrainOutcome:
    values = {f.name: getattr(message, f.name) for f in dataclasses.fields(TrainOutcome)}
    values.update(checkpoint=blob_ref_from_message(message.checkpoint, "checkpoint"), test=dict(message.test),
                  valid=dict(message.valid),
                  finetune_kept=message.finetune_kept if message.HasField("finetune_kept") else None,
                  ranks=blob_ref_from_message(message.ranks, "ranks") if message.HasField("ranks") else None)
    return TrainOutcome(**values)


def outcome_to_json(outcome: TrainOutcome) -> dict:
    return dataclasses.asdict(outcome)


def outcome_from_json(data: dict) -> TrainOutcome:
    ranks = data.get("ranks")
    return TrainOutcome(**{**data, "checkpoint": BlobRef(**data["checkpoint"]),
                           "ranks": None if ranks is None else BlobRef(**ranks)})
