"""The recursion in-process: ``rsir.recursion``'s stages with the work done in this process.

``rsir run`` and the bench execute runs through ``run_local``; the orchestrator executes the same
stages with the work delegated to the trainer and generator services. Models, datasets and
generated sequences stay in memory under the handles the stages pass around.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rsir.analysis import describe
from rsir.checkpoint import load_checkpoint
from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from rsir.datasets import SequenceDataset
from rsir.errors import DataError
from rsir.evaluation import evaluate
from rsir.generation import GeneratedBatch, generate, merge_generated
from rsir.models import SequentialRecommender
from rsir.recipes import RunConfig
from rsir.recursion import RunState, Stage, Trained, run
from rsir.resources import resolve_device
from rsir.training import TrainResult, continue_on_real, train


class LocalWorkers:
    """Stage work in this process (``rsir.recursion.Workers``); handles are plain keys."""

    def __init__(self, dataset: SequenceDataset, *, device: str = "auto", progress: bool = True,
                 fixed: SequentialRecommender | None = None):
        self.root, self.device, self.progress = dataset, resolve_device(device), progress
        self.datasets: dict[str, SequenceDataset] = {dataset.version: dataset}
        self.models: dict[str, SequentialRecommender] = {} if fixed is None else {"fixed": fixed}
        self.results: dict[str, TrainResult] = {}
        self.test_ranks: dict[str, np.ndarray] = {}
        self.generated: dict[str, list[GeneratedBatch]] = {}

    def prepare(self) -> tuple[str, dict[str, Any]]:
        return self.root.version, describe(self.root)

    def train(self, role: str, k: int, dataset: str, model: ModelConfig, config: TrainConfig,
              init: Trained | None = None, start: Trained | None = None) -> Trained:
        data, key = self.datasets[dataset], f"{role}-{k}"
        if init is None:
            weights = None if start is None else copy.deepcopy(self.models[start.checkpoint])
            result = train(data, model, config, model=weights, progress=self.progress)
        else:
            result = continue_on_real(data, self.models[init.checkpoint], config, valid=init.valid,
                                      best_epoch=init.best_epoch, epochs=init.epochs, seconds=init.seconds,
                                      progress=self.progress)
        device = next(result.model.parameters()).device
        test = evaluate(result.model, data, "test", batch_size=config.eval_batch_size, device=device)
        self.models[key], self.results[key], self.test_ranks[key] = result.model, result, test.ranks
        return Trained(key, key, result.valid, test.metrics(), result.best_epoch, result.epochs, result.stopped_by,
                       result.seconds, result.seconds_per_epoch, result.peak_memory_mb, result.finetune_kept,
                       result.insertion_sequences)

    def fixed_teacher(self, checkpoint: str) -> Any:
        if "fixed" not in self.models:
            model, info = load_checkpoint(checkpoint)
            if info.num_items != self.root.num_items:
                raise DataError(f"the teacher knows {info.num_items} items but the dataset has "
                                f"{self.root.num_items}")
            self.models["fixed"] = model
        return "fixed"

    def generate(self, k: int, teacher: Any, dataset: str, config: GenerationConfig) -> dict[str, Any]:
        batches = list(generate(self.models[teacher], self.datasets[dataset], config, device=self.device))
        self.generated[f"generated-{k}"] = batches
        return {"output": f"generated-{k}", "teacher": teacher,
                "stats": batches[-1].stats.to_dict() if batches else {}}

    def merge(self, k: int, dataset: str, generation: dict[str, Any], config: GenerationConfig,
              name: str) -> tuple[str, dict[str, Any], dict[str, int]]:
        merged, counts = merge_generated(self.datasets[dataset], self.generated.pop(generation["output"]),
                                         dedup=config.dedup, name=name)
        self.datasets[merged.version] = merged
        return merged.version, describe(merged), counts

    def ranks(self, handle: Any) -> np.ndarray:
        return self.test_ranks[handle]


@dataclass
class LocalRun:
    """A finished in-process run: its state and the workers that hold its models and datasets."""

    config: RunConfig
    state: RunState
    workers: LocalWorkers

    @property
    def selected_model(self) -> SequentialRecommender:
        student = self.state.iterations[self.state.selected or 0].student
        assert student is not None
        return self.workers.models[student.checkpoint]

    @property
    def final_dataset(self) -> SequenceDataset:
        return self.workers.datasets[self.state.iterations[-1].dataset]

    def result(self, k: int, role: str = "student") -> TrainResult:
        return self.workers.results[f"{role}-{k}"]


def run_local(dataset: SequenceDataset, config: RunConfig, *, progress: bool = True,
              fixed_teacher: SequentialRecommender | None = None,
              on_stage: Callable[[RunState], None] | None = None) -> LocalRun:
    """Run ``config`` on ``dataset`` in this process (``fixed_teacher``: a model object standing in
    for ``config.teacher.checkpoint``)."""
    workers = LocalWorkers(dataset, device=config.train.device, progress=progress, fixed=fixed_teacher)
    state = RunState(Stage.PREPARE)
    state = run(config, workers, dataset.name or "dataset", state, on_stage)
    return LocalRun(config, state, workers)
