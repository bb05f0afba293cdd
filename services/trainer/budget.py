"""How much memory one training job needs, estimated before anything is allocated.

The trainer refuses a job whose estimate does not fit its memory budget (``TRAINER_MEMORY_BUDGET_MB``)
instead of letting the allocation fail, or the kernel kill the process, halfway through. The
figures are upper bounds of the largest live tensors, counted from the request and the dataset's
shape alone: the model is built on the ``meta`` device, which allocates nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from rsir.config import ModelConfig, TrainConfig
from rsir.datasets import SequenceDataset
from rsir.losses import resolve_loss
from rsir.models import build_model
from rsir.scoring import rank_block

FLOAT = 4  # bytes of a float32
LOSS_COPIES = 3  # logits, their log-softmax and its gradient live together in backward
PARAM_COPIES = 6  # weights, gradients, Adam's two moments, the best epoch's copy, the first stage's copy
ACTIVATIONS_PER_DIM = 16  # floats kept for backward per position, per hidden unit, per block


@dataclass(frozen=True)
class TrainingEstimate:
    """The peak a job may add to the process, by part (bytes)."""

    loss: int
    activations: int
    evaluation: int
    model: int

    @property
    def total(self) -> int:
        return self.model + max(self.loss + self.activations, self.evaluation)

    def describe(self) -> str:
        mb = lambda n: f"{n / 2**20:,.0f} MB"  # noqa: E731
        return (f"loss {mb(self.loss)}, activations {mb(self.activations)}, evaluation {mb(self.evaluation)}, "
                f"model and optimizer {mb(self.model)}")


def training_bytes(dataset: SequenceDataset, model: ModelConfig, train: TrainConfig) -> TrainingEstimate:
    """Upper bounds for one step of ``train`` on ``dataset``: a batch holds at most as many
    sequences as there are (Insertion ones included), each at most ``max_len`` scored positions."""
    scores = dataset.num_items + 1
    sequences = len(dataset) + round(train.insertion_ratio * dataset.num_synthetic)
    batch = min(train.batch_size, max(sequences, 1))
    longest = int(dataset.sequences.lengths.max(initial=2))
    width = model.max_len if train.insertion_ratio > 0 else min(model.max_len, longest)
    positions = batch * width
    full = resolve_loss(train, dataset.num_items, model.max_len) == "ce"  # what training will run ("auto" resolved)
    classes = scores if full else train.negatives + 1
    loss = positions * classes * (FLOAT * LOSS_COPIES + (0 if full else 3))
    heads = max(model.heads, 1)
    activations = (positions * model.dim * model.layers * ACTIVATIONS_PER_DIM * FLOAT
                   + batch * heads * model.max_len ** 2 * model.layers * FLOAT * LOSS_COPIES)
    users = min(rank_block(dataset.num_items, train.eval_batch_size), max(dataset.num_real, 1))
    evaluation = users * scores * FLOAT * LOSS_COPIES
    with torch.device("meta"):
        parameters = sum(p.numel() for p in build_model(model, dataset.num_items).parameters())
    return TrainingEstimate(loss, activations, evaluation, parameters * FLOAT * PARAM_COPIES)
