"""A run's whole configuration (``RunConfig``) and the named, frozen recipes it starts from.

A recipe is a TOML file in ``configs/recipes/`` (or ``$RSIR_RECIPES_DIR``) with the sections of
``RunConfig``: top-level ``iterations``/``early_stop``/``significance``/``seed`` and the tables
``[student]``, ``[train]``, ``[generation]``, ``[teacher]``. A run names a recipe and may override
any field beside it; with no name, a benchmark gets its own validated recipe and any other dataset
the one that validated best across the benchmarks (``default``). The CLI, the run API and the bench
all resolve a run's configuration here, so they cannot disagree.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rsir.config import GenerationConfig, ModelConfig, TrainConfig, check, from_dict, setting
from rsir.errors import ConfigError

DEFAULT_RECIPE = "default"
RECIPE_SECTIONS = ("student", "train", "generation", "teacher")


@dataclass(frozen=True)
class TeacherConfig:
    """Who generates, when it is not simply the student of the iteration (weak-to-strong).

    ``model``: a backbone trained on D_k each iteration (with ``train``, else the run's training
    settings). ``checkpoint``: a fixed model (a file path in-process, the sha256 of an uploaded
    checkpoint in the services). ``real_stage``: the student teaches after a real-data stage
    (``TrainConfig.finetune_lr`` on D_k's real sequences, kept if validation rises); a student whose
    training already ended with one teaches as it is, so this only adds work where it had none (D_0).
    """

    model: ModelConfig | None = setting(None, help="a backbone trained on D_k each iteration")
    train: TrainConfig | None = setting(None, help="how the teacher model trains (default: the run's settings)")
    checkpoint: str | None = setting(None, help="a fixed model: a file path in-process, an uploaded checkpoint's "
                                                "sha256 in the services")
    real_stage: bool = setting(False, help="the student teaches after a real-data stage")

    def __post_init__(self) -> None:
        check(self)
        if self.model is not None and self.checkpoint is not None:
            raise ConfigError("checkpoint: a teacher is a 'model' or a 'checkpoint', not both")
        if self.train is not None and self.model is None:
            raise ConfigError("train: only a teacher 'model' is trained")
        if self.real_stage and (self.model is not None or self.checkpoint is not None):
            raise ConfigError("real_stage: applies to the student as teacher only")


@dataclass(frozen=True)
class RunConfig:
    """K iterations of train → generate → merge → retrain, and how the reported one is chosen.

    ``seed`` is the run's one seed: it replaces the seeds of ``train``, ``generation`` and the
    teacher's training. ``early_stop``: stop after this many iterations without a better validation
    NDCG@20. ``significance``: paired test of the selected iteration against iteration 0.
    ``warm_start``: student k > 0 starts from student k − 1's weights, where the model that generated
    its synthetic data ended; with a short patience it reaches early stop in half the epochs (beauty),
    at patience 8 in as many as from scratch.
    """

    iterations: int = setting(1, ge=0, le=20, help="K: generation rounds after the base model")
    student: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "the model trained and reported"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "how students train"})
    generation: GenerationConfig = field(default_factory=GenerationConfig,
                                         metadata={"help": "fidelity-filtered generation"})
    teacher: TeacherConfig | None = setting(None, help="who generates (default: the student of the iteration)")
    early_stop: int | None = setting(None, ge=1, le=20, help="stop after this many iterations without a better "
                                                             "validation NDCG@20")
    significance: bool = setting(True, help="paired test of the selected iteration against iteration 0")
    warm_start: bool = setting(False, help="each student after the base starts from the previous student's "
                                            "weights (a fresh Adam) instead of from scratch")
    seed: int = setting(0, ge=0, le=2**31 - 1, help="the run's one seed (training, generation, the teacher's)")

    def __post_init__(self) -> None:
        check(self)
        object.__setattr__(self, "train", replace(self.train, seed=self.seed))
        object.__setattr__(self, "generation", replace(self.generation, seed=self.seed))
        if self.teacher is not None and self.teacher.train is not None:
            object.__setattr__(self, "teacher", replace(self.teacher, train=replace(self.teacher.train,
                                                                                       seed=self.seed)))
        limit = self.generator.max_len if self.generator is not None else self.student.max_len
        if self.generation.max_len > limit:
            raise ConfigError(f"generation.max_len: {self.generation.max_len} exceeds the generating model's "
                              f"max_len ({limit})")

    @property
    def generator(self) -> ModelConfig | None:
        """The backbone that generates when it is trained here (None: a fixed checkpoint)."""
        if self.teacher is not None and self.teacher.checkpoint is not None:
            return None
        return self.teacher.model if self.teacher is not None and self.teacher.model else self.student

    @property
    def teacher_train(self) -> TrainConfig:
        return self.teacher.train if self.teacher is not None and self.teacher.train else self.train

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Build from a mapping shaped like a recipe file; unknown keys are refused by name."""
        return from_dict(cls, data)


def recipes_dir() -> Path:
    """``$RSIR_RECIPES_DIR``, else ``configs/recipes`` beside the package (a source checkout or image)."""
    env = os.environ.get("RSIR_RECIPES_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "configs" / "recipes"


def recipe_names() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.toml"))


def recipe_summary(name: str) -> str:
    """The first line of a recipe file's comment: what the recipe is."""
    lines = (recipes_dir() / f"{name}.toml").read_text().splitlines()
    return lines[0].lstrip("# ") if lines else ""


def load_recipe(name: str) -> dict[str, Any]:
    """The raw settings of recipe ``name`` (a mapping shaped like ``RunConfig``), or of a ``.toml`` file."""
    path = Path(name) if name.endswith(".toml") else recipes_dir() / f"{name}.toml"
    if not (name.endswith(".toml") or name.replace("-", "").replace("_", "").isalnum()) or not path.is_file():
        raise ConfigError(f"recipe: no recipe {name!r}; choose from {', '.join(recipe_names()) or 'none found'}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"recipe {name!r}: {exc}") from None


def recipe_for(dataset: str) -> str:
    """The recipe a run on ``dataset`` gets when it names none."""
    return dataset if dataset in recipe_names() else DEFAULT_RECIPE


def _mapping(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name}: expected a table of settings, got {type(value).__name__}")
    return value


def merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``overrides`` over ``base``, table by table: a field given replaces the recipe's, the rest stays.
    A ``teacher`` given whole replaces the recipe's teacher (a model teacher and a real-stage one do not mix)."""
    out = dict(base)
    for key, value in overrides.items():
        if key in ("student", "train", "generation") and isinstance(value, Mapping):
            out[key] = {**_mapping(out.get(key, {}), key), **value}
        else:
            out[key] = value
    return out


def resolve(recipe: str | None, dataset: str, overrides: Mapping[str, Any] | None = None) -> tuple[str, RunConfig]:
    """The recipe's name and the run configuration: the recipe (``recipe_for(dataset)`` when None)
    with ``overrides`` on top."""
    name = recipe or recipe_for(dataset)
    return name, RunConfig.from_dict(merge(load_recipe(name), overrides or {}))
