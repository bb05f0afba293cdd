"""Frozen, validated hyperparameter records (nanoGPT-style config dataclasses), and their schema.

This module is the one place that states what a setting may be: each field is declared with
``setting`` (default, range, choices, pattern, help), which the dataclass checks on construction (a
bad value raises ``ConfigError`` naming the field), the CLI turns into flags (``rsir.flags``) and the
run API turns into request models (``services.orchestrator.schemas``). Rules that tie several fields
together stay explicit in ``__post_init__``. Records are serialised with ``to_dict`` and rebuilt with
``from_dict``, so that they travel inside checkpoints, gRPC requests and dataset lineage unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from rsir import jsonio
from rsir.errors import ConfigError

T = TypeVar("T")

_RULES = ("ge", "gt", "le", "lt", "choices", "pattern", "help")


def setting(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None, choices: tuple[str, ...] | None = None, pattern: str | None = None,
            help: str = "") -> Any:
    """A config field with its rules: bounds on numbers, ``choices`` or a ``pattern`` (matched whole)
    on strings, and the help text the CLI and the API show."""
    rules = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "pattern": pattern, "help": help}
    return dataclasses.field(default=default, metadata=rules)


@dataclass(frozen=True)
class Setting:
    """What the schema says about one field: every consumer (checks, CLI, API) reads it from here."""

    name: str
    kind: type  # int, float, str, bool or a config dataclass
    optional: bool  # the type is ``X | None``
    default: Any
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    help: str = ""

    def bounds(self) -> dict[str, float]:
        """The numeric bounds that are set, by name (``ge``, ``gt``, ``le``, ``lt``)."""
        return {k: v for k, v in (("ge", self.ge), ("gt", self.gt), ("le", self.le), ("lt", self.lt))
                if v is not None}

    def check(self, value: Any) -> None:
        """Raise ``ConfigError`` naming the field unless ``value`` has its type and obeys its rules."""
        if value is None and self.optional:
            return
        kind = _KIND_NAMES.get(self.kind, f"a {self.kind.__name__}")
        _check(_has_kind(value, self.kind), self.name, f"must be {kind}{' or null' if self.optional else ''}, "
                                                       f"got {value!r}")
        within = ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                  and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))
        if not within:
            raise ConfigError(f"{self.name}: must be {self.range_text()}, got {value}")
        if self.choices is not None:
            _check(value in self.choices, self.name, f"must be {_alternatives(self.choices)}, got {value!r}")
        if self.pattern is not None:
            _check(re.fullmatch(self.pattern, value) is not None, self.name,
                   f"must match {self.pattern}, got {value!r}")

    def range_text(self) -> str:
        """The bounds in words ("in [0, 1)", "> 0"), empty when there are none."""
        low, high = self.ge if self.gt is None else self.gt, self.le if self.lt is None else self.lt
        if low is not None and high is not None:
            return f"in {'[' if self.gt is None else '('}{low}, {high}{']' if self.lt is None else ')'}"
        if low is not None:
            return f"{'>=' if self.gt is None else '>'} {low}"
        if high is not None:
            return f"{'<=' if self.lt is None else '<'} {high}"
        return ""


_KIND_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _has_kind(value: Any, kind: type) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool) and not math.isnan(value)
    return isinstance(value, kind)


def _alternatives(choices: tuple[str, ...]) -> str:
    quoted = [repr(c) for c in choices]
    return " or ".join(quoted) if len(quoted) <= 2 else f"one of {', '.join(quoted)}"


_SCHEMAS: dict[type, tuple[Setting, ...]] = {}


def schema(cls: type) -> tuple[Setting, ...]:
    """The settings of config dataclass ``cls``, in field order (worked out once per class)."""
    if cls in _SCHEMAS:
        return _SCHEMAS[cls]
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind, optional = hints[f.name], False
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            args = [a for a in typing.get_args(kind) if a is not type(None)]
            kind, optional = args[0], len(args) < len(typing.get_args(kind))
        default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
        out.append(Setting(f.name, kind, optional, default, **{k: f.metadata[k] for k in _RULES if k in f.metadata}))
    _SCHEMAS[cls] = tuple(out)
    return _SCHEMAS[cls]


def check(config: Any) -> None:
    """Check every field of ``config`` against its setting (called first in ``__post_init__``)."""
    for s in schema(type(config)):
        s.check(getattr(config, s.name))


def _check(cond: bool, field: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{field}: {message}")


def to_dict(config: Any) -> dict[str, Any]:
    """A dict of a config dataclass (``inf`` stays a float; ``rsir.jsonio`` writes it as "inf")."""
    return dataclasses.asdict(config)


def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
    """Rebuild ``cls`` from a dict as read from JSON or TOML, refusing unknown keys so that typos never
    pass silently. Float fields accept "inf"; nested config fields accept a dict of their own."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{cls.__name__}: expected a mapping, got {type(data).__name__}")
    settings = {s.name: s for s in schema(cls)}
    unknown = sorted(set(data) - set(settings))
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}")
    values = {}
    for name, value in data.items():
        kind = settings[name].kind
        if kind is float:
            value = jsonio.number(value)
        elif dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
            try:
                value = from_dict(kind, value)
            except ConfigError as exc:
                raise ConfigError(f"{name}.{exc}") from None
        values[name] = value
    try:
        return cls(**values)
    except TypeError as exc:  # what dataclass construction itself rejects
        raise ConfigError(f"{cls.__name__}: {exc}") from None


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one backbone. Fields a backbone does not use are ignored by it."""

    name: str = setting("sasrec", pattern=r"[a-z0-9_]+", help="backbone (rsir.models.MODELS)")
    dim: int = setting(64, ge=1, le=4096, help="embedding and hidden size; a multiple of heads")
    layers: int = setting(2, ge=1, le=64, help="encoder blocks")
    heads: int = setting(2, ge=1, le=64, help="attention heads per block (gru ignores it)")
    dropout: float = setting(0.2, ge=0, lt=1, help="dropout probability")
    max_len: int = setting(50, ge=2, le=4096, help="most recent items a model sees")
    cl_weight: float = setting(0.1, ge=0, help="CL4SRec: weight of the contrastive term")
    cl_temperature: float = setting(1.0, gt=0, help="CL4SRec: softmax temperature of the contrastive term")
    crop_ratio: float = setting(0.6, ge=0, le=1, help="CL4SRec: fraction of a sequence the crop keeps")
    mask_ratio: float = setting(0.3, ge=0, le=1, help="CL4SRec: fraction of items the mask hides")
    reorder_ratio: float = setting(0.6, ge=0, le=1, help="CL4SRec: fraction of a sequence the reorder shuffles")
    bsarec_alpha: float = setting(0.7, ge=0, le=1, help="BSARec: weight of the frequency-domain inductive bias "
                                                        "against self-attention (0: SASRec layers)")
    bsarec_c: int = setting(5, ge=1, le=8192, help="BSARec: low-pass cut-off; real-FFT bins 0..c//2 of the "
                                                  "max_len window pass unscaled")

    def __post_init__(self) -> None:
        check(self)
        _check(self.dim % self.heads == 0, "heads", f"must divide dim ({self.dim})")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is fitted: loss, optimiser, stopping rule, budget and seed."""

    loss: str = setting("auto", choices=("auto", "ce", "sampled"),
                        help="ce: full softmax over every item; sampled: sampled softmax; auto: ce while a "
                             "batch's logits fit rsir.losses.FULL_SOFTMAX_BUDGET_BYTES, else sampled (logged)")
    negatives: int = setting(256, ge=1, le=1_000_000,
                             help="sampled softmax: uniform negatives per sequence, excluding its items")
    batch_size: int = setting(256, ge=1, le=1_000_000, help="sequences per step")
    lr: float = setting(1e-3, gt=0, le=10, help="Adam learning rate")
    weight_decay: float = setting(0.0, ge=0, help="Adam weight decay")
    max_epochs: int = setting(200, ge=1, le=100_000, help="most epochs")
    patience: int = setting(10, ge=1, le=100_000, help="epochs without a better validation NDCG@20 before stopping")
    min_delta: float = setting(0.0, ge=0, lt=1, help="relative rise of validation NDCG@20 that restarts patience "
                                                     "(0: any rise); the best epoch is kept whatever its margin")
    time_budget: float | None = setting(None, gt=0, help="seconds of training; the best model so far is kept")
    seed: int = setting(0, help="seed of initialisation, batching and sampling")
    device: str = setting("auto", pattern=r"auto|cpu|cuda(:[0-9]+)?",
                          help="auto, cpu, cuda or cuda:N; auto picks CUDA when present")
    synthetic_weight: float = setting(1.0, ge=0, le=100,
                                      help="loss weight of synthetic (generated) sequences; 0 leaves them out")
    finetune_real: bool = setting(False, help="then continue on the real sequences alone, kept if validation rises")
    finetune_lr_scale: float = setting(1.0, gt=0, le=10, help="that stage's learning rate relative to lr "
                                                              "(< 1: gentler, keeps more of stage one)")
    insertion_ratio: float = setting(0.0, ge=0, le=10, help="Insertion sequences added per synthetic one "
                                                            "(rsir.augmentation.stack_insertion)")
    eval_batch_size: int = setting(1024, ge=1, le=1_000_000, help="users ranked at once during evaluation")
    valid_users: int = setting(50_000, ge=0, le=1_000_000_000,
                               help="users that validation ranks after each epoch: a fixed seeded sample where "
                                    "there are more (0: all). Ranking scores every item for each user, so this "
                                    "bounds an epoch's validation; the test evaluation ranks every user")
    precision: str = setting("auto", choices=("auto", "fp32", "bf16"),
                             help="compute dtype of training's products (rsir.precision); auto: bf16 where "
                                  "the CPU or GPU runs it natively, else fp32")
    item_updates: str = setting("auto", choices=("auto", "dense"),
                                help="auto: Adam updates only the item rows a step touched (lazy, sparse "
                                     "gradients) when the sampled softmax trains in one process without weight "
                                     "decay, so a step's cost does not grow with the catalogue (rsir.optim); "
                                     "dense: the whole item table every step")

    def __post_init__(self) -> None:
        check(self)
        _check(self.finetune_lr <= 10, "finetune_lr_scale",
               f"lr × finetune_lr_scale must be <= 10, got {self.finetune_lr}")

    @property
    def finetune_lr(self) -> float:
        """The real-data stage's learning rate (``finetune_real``); checked here, not mid-training."""
        return self.lr * self.finetune_lr_scale


@dataclass(frozen=True)
class GenerationConfig:
    """Fidelity-filtered generation (architecture.md §1).

    ``tau`` is the fidelity rank threshold (``math.inf`` disables the check); ``p`` the probability
    that a step draws from the sequence's own items rather than the whole catalogue; ``m`` the
    attempts per sequence; ``top_k``/``temperature`` the sampling inside the pool (k = 1 is greedy).
    """

    tau: float = setting(20, gt=0, help="fidelity rank threshold; inf turns the check off")
    p: float = setting(0.5, ge=0, le=1, help="probability that a step draws from the sequence's own items")
    m: int = setting(5, ge=1, le=1000, help="attempts per source sequence")
    top_k: int = setting(1, ge=1, le=100_000, help="top-k sampling inside the pool; 1 is greedy")
    temperature: float = setting(1.0, gt=0, le=100, help="sampling temperature inside the pool")
    prefix: str = setting("first", choices=("first", "random"),
                          help="first: start from the first item; random: a random-length prefix")
    target: str = setting("remaining", choices=("remaining", "future"),
                          help="remaining: items not yet generated; future: items after the prefix")
    min_len: int = setting(3, ge=2, le=4096, help="shorter generated sequences are dropped")
    max_len: int = setting(50, ge=2, le=4096, help="longest generated sequence; at least min_len")
    dedup: bool = setting(True, help="merge: drop generated sequences equal to one already in the dataset")
    sources: str = setting("real", choices=("real", "all"),
                           help="real: real users' training sequences; all: synthetic ones too")
    seed: int = setting(0, help="seed of the counter-based random draws")
    batch_rows: int | None = setting(None, ge=1, le=10_000_000,
                                     help="rows decoded together; bounds peak memory (unset: decode_rows)")

    def __post_init__(self) -> None:
        check(self)
        _check(self.min_len <= self.max_len, "max_len", f"must be >= min_len ({self.min_len}), got {self.max_len}")

    @property
    def decode_rows(self) -> int:
        """``batch_rows``, or the default measured on beauty with 2 workers. Memory grows with it, not
        with the catalogue. Each chunk ends in a tail of a few long rows decoded a step at a time, so
        with the fidelity check, which stops most rows within two steps, few large chunks are fastest
        (131072: 2.1 s in two chunks against 3.0 s in fourteen at 16384; 1.3 against 0.8 GiB peak).
        Without it (τ = ∞) every row decodes to its full length and chunks whose step arrays stay in
        cache win (16384: 19 s against 24 s; 1.5 against 2.7 GiB peak)."""
        if self.batch_rows is not None:
            return self.batch_rows
        return 131072 if math.isfinite(self.tau) else 16384
