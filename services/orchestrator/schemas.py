"""Request and response models of the run API, validated at the edge.

The spec models mirror ``rsir.config`` field for field with the same ranges as ``Field``
constraints, so a bad value gets a 422 whose ``loc`` names the field (``generation.tau``). Every
field is optional: unset takes the core library's default. Each model also builds its core config,
which re-checks cross-field rules (``heads`` must divide ``dim``) and names the field in the message.
``tau`` accepts ``"inf"`` (fidelity control off) and is stored as the string ``"Infinity"``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rsir.config import GenerationConfig, ModelConfig, TrainConfig, from_dict
from rsir.errors import ConfigError
from rsir.models import MODELS
from rsir.sources import BENCHMARKS, SYNTHETIC

HEX64 = re.compile(r"^[0-9a-f]{64}$")
RUN_ID = r"^r[0-9a-f]{12}$"
ModelName = Literal[tuple(MODELS)]  # type: ignore[valid-type]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")

    def values(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


def _build(cls: type, values: dict[str, Any]) -> Any:
    try:
        return from_dict(cls, values)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


class ModelSpec(_Spec):
    """A backbone (``rsir.config.ModelConfig``)."""

    name: ModelName | None = None
    dim: int | None = Field(None, ge=1, le=4096)
    layers: int | None = Field(None, ge=1, le=64)
    heads: int | None = Field(None, ge=1, le=64)
    dropout: float | None = Field(None, ge=0, lt=1)
    max_len: int | None = Field(None, ge=2, le=4096)
    cl_weight: float | None = Field(None, ge=0)
    cl_temperature: float | None = Field(None, gt=0)
    crop_ratio: float | None = Field(None, ge=0, le=1)
    mask_ratio: float | None = Field(None, ge=0, le=1)
    reorder_ratio: float | None = Field(None, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        self.config()
        return self

    def config(self) -> ModelConfig:
        return _build(ModelConfig, self.values())


class TrainSpec(_Spec):
    """How a model is fitted (``rsir.config.TrainConfig``); the seed is the run's."""

    loss: Literal["ce", "sampled"] | None = None
    negatives: int | None = Field(None, ge=1, le=1_000_000)
    batch_size: int | None = Field(None, ge=1, le=1_000_000)
    lr: float | None = Field(None, gt=0, le=10)
    weight_decay: float | None = Field(None, ge=0)
    max_epochs: int | None = Field(None, ge=1, le=100_000)
    patience: int | None = Field(None, ge=1, le=100_000)
    time_budget: float | None = Field(None, gt=0)
    device: str | None = Field(None, pattern=r"^(auto|cpu|cuda(:[0-9]{1,2})?)$")
    synthetic_weight: float | None = Field(None, ge=0, le=100)
    finetune_real: bool | None = None
    finetune_lr_scale: float | None = Field(None, gt=0, le=10)
    insertion_ratio: float | None = Field(None, ge=0, le=10)
    eval_batch_size: int | None = Field(None, ge=1, le=1_000_000)

    def config(self, seed: int) -> TrainConfig:
        return _build(TrainConfig, {**self.values(), "seed": seed})


class GenerationSpec(_Spec):
    """Fidelity-filtered generation (``rsir.config.GenerationConfig``); the seed is the run's."""

    tau: float | None = Field(None, gt=0, description="fidelity rank threshold; \"inf\" turns the check off")
    p: float | None = Field(None, ge=0, le=1)
    m: int | None = Field(None, ge=1, le=1000)
    top_k: int | None = Field(None, ge=1, le=100_000)
    temperature: float | None = Field(None, gt=0, le=100)
    prefix: Literal["first", "random"] | None = None
    target: Literal["remaining", "future"] | None = None
    min_len: int | None = Field(None, ge=2, le=4096)
    max_len: int | None = Field(None, ge=2, le=4096)
    dedup: bool | None = None
    sources: Literal["real", "all"] | None = None
    batch_rows: int | None = Field(None, ge=1, le=10_000_000)

    @model_validator(mode="after")
    def _check(self) -> GenerationSpec:
        self.config(0)
        return self

    def config(self, seed: int) -> GenerationConfig:
        return _build(GenerationConfig, {**self.values(), "seed": seed})


class TeacherSpec(_Spec):
    """Weak-to-strong: the model that generates, when it is not the student itself.

    Either ``model`` (a cheap backbone trained on D_k each iteration, with ``train`` or the run's
    training settings) or ``checkpoint`` (the sha256 of an uploaded checkpoint, used as is).
    """

    model: ModelSpec | None = None
    checkpoint: str | None = Field(None, pattern=HEX64.pattern)
    train: TrainSpec | None = None

    @model_validator(mode="after")
    def _one(self) -> TeacherSpec:
        if (self.model is None) == (self.checkpoint is None):
            raise ValueError("teacher: give exactly one of 'model' or 'checkpoint'")
        if self.checkpoint is not None and self.train is not None:
            raise ValueError("teacher.train: a fixed checkpoint is not trained")
        return self


class RunSpec(_Spec):
    """What ``POST /runs`` accepts: K iterations of train → generate → merge → retrain."""

    dataset: str = Field(description=f"a benchmark ({', '.join(BENCHMARKS)}), '{SYNTHETIC}', or the version "
                                     "(sha256) of an uploaded dataset")
    name: str | None = Field(None, max_length=100)
    iterations: int = Field(2, ge=0, le=20, description="K: generation rounds after the base model")
    student: ModelSpec = Field(default_factory=ModelSpec)
    teacher: TeacherSpec | None = None
    train: TrainSpec = Field(default_factory=TrainSpec)
    generation: GenerationSpec = Field(default_factory=GenerationSpec)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    early_stop: int | None = Field(None, ge=1, le=20, description="stop after this many iterations without a "
                                                                  "better validation NDCG@20")
    significance: bool = Field(True, description="paired test of the selected iteration against iteration 0")

    @field_validator("dataset")
    @classmethod
    def _dataset(cls, value: str) -> str:
        if value in BENCHMARKS or value == SYNTHETIC or HEX64.fullmatch(value):
            return value
        raise ValueError(f"must be a benchmark ({', '.join(BENCHMARKS)}), '{SYNTHETIC}' or a dataset version "
                         "(64 lowercase hex digits)")

    @model_validator(mode="after")
    def _lengths(self) -> RunSpec:
        teacher = self.teacher.model if self.teacher and self.teacher.model else self.student
        limit = teacher.config().max_len
        if self.generation.config(0).max_len > limit:
            raise ValueError(f"generation.max_len: {self.generation.config(0).max_len} exceeds the generating "
                             f"model's max_len ({limit})")
        return self


class RunCreated(BaseModel):
    id: str
    status: str
    url: str
    events: str


class RunView(BaseModel):
    """A run's state: stage, iteration, metrics per iteration, generation statistics, timings."""

    model_config = ConfigDict(extra="allow")

    id: str
    name: str | None = None
    status: str
    stage: str
    iteration: int
    iterations_total: int
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    spec: dict[str, Any]
    datasets: list[str]
    iterations: list[dict[str, Any]]
    progress: dict[str, Any] | None = None
    selected: int | None = None
    stopped_by: str | None = None


class DatasetView(BaseModel):
    """A dataset version and its lineage (parent, teacher checkpoint, settings, statistics)."""

    model_config = ConfigDict(extra="allow")

    version: str
    name: str
    uri: str
    size: int
    created_at: float
    source: str
    parent: str | None = None
    stats: dict[str, Any]


class CheckpointView(BaseModel):
    model_config = ConfigDict(extra="allow")

    sha256: str
    uri: str
    model: dict[str, Any]
    num_items: int
