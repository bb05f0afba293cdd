"""The in-process recursive loop: train → generate → merge → retrain, K times (paper §3.1).

The teacher (generator) and the student (the model that is trained and reported) are separate:
by default the student of iteration k is the teacher of iteration k (self-improvement); a run may
instead name a cheap teacher spec, trained on D_k each iteration, or a fixed model. The reported
iteration is chosen on validation NDCG@20, never on test.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rsir.analysis import describe
from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from rsir.datasets import SequenceDataset
from rsir.errors import ConfigError
from rsir.evaluation import EvalResult, evaluate, paired_test
from rsir.generation import generate, merge_generated
from rsir.models import SequentialRecommender
from rsir.resources import resolve_device
from rsir.training import STOP_METRIC, train

logger = logging.getLogger(__name__)
Teacher = ModelConfig | SequentialRecommender | None


@dataclass
class IterationReport:
    iteration: int
    dataset: dict[str, Any]  # describe() of D_k (without the Insertion sequences of TrainConfig.insertion_ratio)
    valid: dict[str, float]
    test: dict[str, float]
    best_epoch: int
    seconds: dict[str, float]
    generation: dict[str, int] | None = None  # statistics of the pass that produced D_k
    merge: dict[str, int] | None = None
    finetune_kept: bool | None = None  # TrainConfig.finetune_real: whether validation kept the real-data stage
    insertion_sequences: int = 0  # TrainConfig.insertion_ratio: Insertion sequences the student also trained on


@dataclass
class LoopReport:
    iterations: list[IterationReport] = field(default_factory=list)
    selected: int = 0  # chosen on validation
    significance: dict[str, dict[str, float]] = field(default_factory=dict)  # selected vs iteration 0
    final_dataset: SequenceDataset | None = None
    selected_model: SequentialRecommender | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"selected": self.selected, "significance": self.significance,
                "iterations": [vars(r) for r in self.iterations]}


def run_iterations(dataset: SequenceDataset, student: ModelConfig, train_config: TrainConfig,
                   generation: GenerationConfig, iterations: int, *, teacher: Teacher = None,
                   teacher_train: TrainConfig | None = None,
                   on_stage: Callable[[int, str, dict[str, Any]], None] | None = None,
                   progress: bool = True) -> LoopReport:
    """Run K = ``iterations`` RSIR iterations after the base model (iteration 0)."""
    if iterations < 0:
        raise ConfigError("iterations must be >= 0")
    device = resolve_device(train_config.device)
    stage = on_stage or (lambda k, name, info: None)
    report = LoopReport()
    tests: list[EvalResult] = []
    current, gen_stats, merge_stats = dataset, None, None
    selected_model = None
    for k in range(iterations + 1):
        timings: dict[str, float] = {}
        stage(k, "train_student", {"dataset": current.version})
        t0 = time.perf_counter()
        fitted = train(current, student, train_config, progress=progress)
        timings["train_student"] = time.perf_counter() - t0
        test_result = evaluate(fitted.model, current, "test", device=device)
        tests.append(test_result)
        row = IterationReport(k, describe(current, student.max_len), fitted.valid, test_result.metrics(),
                              fitted.best_epoch, timings, gen_stats, merge_stats, fitted.finetune_kept,
                              fitted.insertion_sequences)
        report.iterations.append(row)
        if selected_model is None or row.valid[STOP_METRIC] > report.iterations[report.selected].valid[STOP_METRIC]:
            report.selected, selected_model = k, fitted.model
        stage(k, "evaluated", {"valid": row.valid, "test": row.test})
        logger.info("iteration %d: valid %s %.4f, test recall@10 %.4f", k, STOP_METRIC, row.valid[STOP_METRIC],
                    row.test["recall@10"])
        if k == iterations:
            break
        teacher_model = _teacher(teacher, fitted.model, current, teacher_train or train_config, progress, stage, k,
                                 timings)
        stage(k, "generate", {})
        t0 = time.perf_counter()
        batches = list(generate(teacher_model, current, generation, device=device))
        timings["generate"] = time.perf_counter() - t0
        gen_stats = batches[-1].stats.to_dict() if batches else {}
        current, merge_stats = merge_generated(current, batches, dedup=generation.dedup,
                                               name=f"{dataset.name}+rsir{k + 1}")
        stage(k, "merged", {"dataset": current.version, **merge_stats})
    report.final_dataset, report.selected_model = current, selected_model
    report.significance = {m: paired_test(tests[0], tests[report.selected], m) for m in ("recall@10", "ndcg@10")}
    return report


def _teacher(teacher: Teacher, student_model: SequentialRecommender, data: SequenceDataset, config: TrainConfig,
             progress: bool, stage: Callable[[int, str, dict[str, Any]], None], k: int,
             timings: dict[str, float]) -> SequentialRecommender:
    if teacher is None:
        return student_model
    if isinstance(teacher, SequentialRecommender):
        return teacher
    stage(k, "train_teacher", {"dataset": data.version})
    t0 = time.perf_counter()
    model = train(data, teacher, config, progress=progress).model
    timings["train_teacher"] = time.perf_counter() - t0
    return model
