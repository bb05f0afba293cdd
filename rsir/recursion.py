"""The RSIR recursion, once: named, resumable stages over a small interface (paper §3.1).

A run moves through ``prepare`` → (``train_student`` → [``train_teacher``] → ``generate`` →
``merge``) × K → ``train_student`` → ``report`` → ``done``. ``step`` runs the stage a ``RunState``
names and returns the state with that stage's result and the next stage, so an executor can commit
the state after every stage and resume a stopped run where it stopped. The work of each stage is
behind ``Workers``: in-process (``rsir.local``: ``rsir run`` and the bench) or over gRPC (the
orchestrator delegates to the trainer and generator services). The semantics live here only:
teacher choice, selection on validation, early stopping and the paired significance test.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol

import numpy as np

from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from rsir.evaluation import EvalResult, paired_test
from rsir.recipes import RunConfig

STOP_METRIC = "ndcg@20"  # selection and early stopping, on validation (as training's own stopping rule)
SIGNIFICANCE_METRICS = ("recall@10", "ndcg@10")


class Stage(StrEnum):
    PREPARE = "prepare"
    TRAIN_STUDENT = "train_student"
    TRAIN_TEACHER = "train_teacher"
    GENERATE = "generate"
    MERGE = "merge"
    REPORT = "report"
    DONE = "done"


@dataclass
class Trained:
    """A finished training job. ``checkpoint`` and ``ranks`` are the workers' handles (JSON values) of the
    model and of its per-user 0-based test ranks; the rest is what training reported."""

    checkpoint: Any
    ranks: Any
    valid: dict[str, float]
    test: dict[str, float]
    best_epoch: int
    epochs: int
    stopped_by: str
    seconds: float
    seconds_per_epoch: float = 0.0
    peak_memory_mb: float = 0.0
    finetune_kept: bool | None = None  # None: no real-data stage ran
    insertion_sequences: int = 0
    job_id: str | None = None


@dataclass
class Iteration:
    """Iteration k: the dataset D_k, the student trained on it, and what produced D_{k+1}."""

    iteration: int
    dataset: str  # the version of D_k
    dataset_stats: dict[str, Any] = field(default_factory=dict)
    student: Trained | None = None
    teacher: Trained | None = None  # a teacher trained in this iteration (a model, or the real-data stage)
    generation: dict[str, Any] | None = None  # the pass's statistics and the workers' handle of its output
    merge: dict[str, int] | None = None
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class RunState:
    stage: Stage = Stage.PREPARE
    iteration: int = 0
    iterations: list[Iteration] = field(default_factory=list)
    selected: int | None = None  # chosen on validation
    stopped_by: str | None = None  # "iterations" or "early_stop"
    significance: dict[str, Any] | None = None

    @property
    def datasets(self) -> list[str]:
        return [it.dataset for it in self.iterations]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        its = []
        for it in data.get("iterations", []):
            it = dict(it)
            for role in ("student", "teacher"):
                it[role] = Trained(**it[role]) if it.get(role) else None
            its.append(Iteration(**it))
        return cls(Stage(data["stage"]), data["iteration"], its, data.get("selected"), data.get("stopped_by"),
                   data.get("significance"))


class Workers(Protocol):
    """What each stage needs done; handles are JSON values the implementation understands."""

    def prepare(self) -> tuple[str, dict[str, Any]]:
        """Store D_0: its version and statistics."""

    def train(self, role: str, k: int, dataset: str, model: ModelConfig, config: TrainConfig,
              init: Trained | None = None, start: Trained | None = None) -> Trained:
        """Fit ``model`` on ``dataset``: from scratch, from ``start``'s weights (the whole training), or,
        with ``init``, only continue that model with the real-data stage."""

    def fixed_teacher(self, checkpoint: str) -> Any:
        """The model handle of a fixed teacher checkpoint."""

    def generate(self, k: int, teacher: Any, dataset: str, config: GenerationConfig) -> dict[str, Any]:
        """One fidelity-filtered generation pass: {"stats": ..., and the handle of its output}."""

    def merge(self, k: int, dataset: str, generation: dict[str, Any], config: GenerationConfig,
              name: str) -> tuple[str, dict[str, Any], dict[str, int]]:
        """D_{k+1} = D_k ∪ D': its version, its statistics and the merge counts."""

    def ranks(self, handle: Any) -> np.ndarray:
        """Per-user 0-based test ranks [U] stored under ``handle``."""


def after_student(scores: list[float], iterations: int, patience: int | None) -> tuple[int, str | None]:
    """The iteration selected on validation (the best score; the earliest on a tie) and why the run
    stops after the latest one (None: it goes on)."""
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    k = len(scores) - 1
    if k >= iterations:
        return best, "iterations"
    if patience is not None and k - best >= patience:
        return best, "early_stop"
    return best, None


def teacher_model(config: RunConfig, it: Iteration, workers: Workers) -> Any:
    """The model that generates in iteration ``it``: a fixed checkpoint, the teacher trained in this
    iteration, or the student itself."""
    if config.teacher is not None and config.teacher.checkpoint is not None:
        return workers.fixed_teacher(config.teacher.checkpoint)
    assert it.student is not None
    return (it.teacher or it.student).checkpoint


def needs_teacher_training(config: RunConfig, student: Trained) -> bool:
    teacher = config.teacher
    if teacher is None:
        return False
    return teacher.model is not None or (teacher.real_stage and student.finetune_kept is None)


def step(state: RunState, config: RunConfig, workers: Workers, name: str = "dataset") -> RunState:
    """Run the stage ``state`` names; record its result and the next stage in ``state`` (returned).

    ``name`` is D_0's name; merged versions are called ``<name>+rsir<k>``.
    """
    t0 = time.perf_counter()
    stage, k = state.stage, state.iteration
    it = state.iterations[k] if k < len(state.iterations) else None
    if stage is Stage.PREPARE:
        version, stats = workers.prepare()
        state.iterations, state.stage = [Iteration(0, version, stats)], Stage.TRAIN_STUDENT
    elif stage is Stage.TRAIN_STUDENT:
        assert it is not None
        start = state.iterations[k - 1].student if config.warm_start and k > 0 else None
        it.student = workers.train("student", k, it.dataset, config.student, config.train, start=start)
        scores = [i.student.valid.get(STOP_METRIC, 0.0) for i in state.iterations if i.student is not None]
        state.selected, state.stopped_by = after_student(scores, config.iterations, config.early_stop)
        if state.stopped_by is not None:
            state.stage = Stage.REPORT
        else:
            state.stage = Stage.TRAIN_TEACHER if needs_teacher_training(config, it.student) else Stage.GENERATE
    elif stage is Stage.TRAIN_TEACHER:
        assert it is not None and it.student is not None and config.teacher is not None
        if config.teacher.model is not None:
            it.teacher = workers.train("teacher", k, it.dataset, config.teacher.model, config.teacher_train)
        else:  # the student after a real-data stage
            it.teacher = workers.train("teacher", k, it.dataset, config.student, config.train, init=it.student)
        state.stage = Stage.GENERATE
    elif stage is Stage.GENERATE:
        assert it is not None
        it.generation = workers.generate(k, teacher_model(config, it, workers), it.dataset, config.generation)
        state.stage = Stage.MERGE
    elif stage is Stage.MERGE:
        assert it is not None and it.generation is not None
        version, stats, counts = workers.merge(k, it.dataset, it.generation, config.generation,
                                               f"{name}+rsir{k + 1}")
        it.merge = counts
        state.iterations = [*state.iterations[:k + 1], Iteration(k + 1, version, stats)]
        state.iteration, state.stage = k + 1, Stage.TRAIN_STUDENT
    elif stage is Stage.REPORT:
        state.significance = significance(state, config, workers)
        state.stage = Stage.DONE
    if it is not None:
        it.timings[stage.value] = time.perf_counter() - t0
    return state


def significance(state: RunState, config: RunConfig, workers: Workers) -> dict[str, Any] | None:
    """Paired t-test and Wilcoxon test of the selected iteration's student against iteration 0's on
    the same real users; skipped when iteration 0 itself is selected or the run asks for none."""
    if not config.significance or not state.selected:
        return None
    first, chosen = state.iterations[0].student, state.iterations[state.selected].student
    assert first is not None and chosen is not None
    base, other = EvalResult(workers.ranks(first.ranks)), EvalResult(workers.ranks(chosen.ranks))
    return {"baseline": 0, "iteration": state.selected,
            "tests": {m: paired_test(base, other, m) for m in SIGNIFICANCE_METRICS}}


def run(config: RunConfig, workers: Workers, name: str = "dataset", state: RunState | None = None,
        on_stage: Callable[[RunState], None] | None = None) -> RunState:
    """Run (or resume) to the end; ``on_stage`` sees the state after every stage (a commit point)."""
    state = state or RunState()
    while state.stage is not Stage.DONE:
        state = step(state, config, workers, name)
        if on_stage is not None:
            on_stage(state)
    return state
