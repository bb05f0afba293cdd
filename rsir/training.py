"""Fitting a backbone: random packed batches, the two losses, early stopping.

Batches are random samples of sequences, packed end to end (``rsir.batching``) so that neither
the encoder nor the loss spends compute on padding: only real positions are scored against the
catalogue.
Training stops on validation NDCG@20 (of at most ``valid_users`` users, the same every epoch)
with patience (counted from the last rise of at least ``min_delta``, relative; the best epoch is
kept whatever its margin), at ``max_epochs``, at the time budget, or when ``should_stop`` says so
(checked every batch); the best model on validation is returned. With
``TrainConfig.finetune_real`` a second stage continues on the real sequences alone
(:func:`finetune_real`).

Inside a ``torch.distributed`` group of N processes (``rsir.distributed``) the same loop is data
parallel: every rank draws the same batch order, computes the loss of its share of each global
batch, DDP averages the gradients, and validation is sharded over the ranks; see
:func:`_shard_loss` for why the result is the one-process step at the same global batch. Every
rank then takes the same stopping decisions, calls ``on_epoch`` with the same report (its own
``seconds``) and returns the same model; only rank 0 shows progress.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from rsir.augmentation import stack_insertion
from rsir.batching import packed_batch, padded_batch, random_batches
from rsir.config import ModelConfig, TrainConfig
from rsir.datasets import Ragged, SequenceDataset
from rsir.distributed import World, current
from rsir.errors import DataError
from rsir.evaluation import EvalResult, rank_targets, sample_users
from rsir.losses import next_item_loss, release_buffers
from rsir.models import SequentialRecommender, build_model
from rsir.optim import adam
from rsir.precision import compute_dtype
from rsir.resources import keep_freed_memory, peak_memory_mb, resolve_device

logger = logging.getLogger(__name__)
STOP_METRIC = "ndcg@20"


@dataclass(frozen=True)
class EpochReport:
    """What one epoch did; passed to ``on_epoch`` (the trainer service streams it)."""

    epoch: int
    loss: float
    valid: dict[str, float]
    seconds: float
    best_epoch: int
    improved: bool


@dataclass
class TrainResult:
    model: SequentialRecommender
    best_epoch: int
    epochs: int
    valid: dict[str, float]
    stopped_by: str  # "patience", "max_epochs", "time_budget" or "cancelled"
    seconds: float
    peak_memory_mb: float
    history: list[EpochReport] = field(default_factory=list)
    finetune_kept: bool | None = None  # None: no real-data stage ran; else whether validation kept it
    insertion_sequences: int = 0  # drawn by TrainConfig.insertion_ratio on top of the dataset's own

    @property
    def seconds_to_best(self) -> float:
        """Seconds of the epochs up to and including the best one (what early stopping's patience adds
        after it is the rest of ``seconds``)."""
        return float(sum(r.seconds for r in self.history if r.epoch <= self.best_epoch))

    @property
    def seconds_per_epoch(self) -> float:
        """Mean seconds of the recorded epochs (both stages with ``finetune_real``)."""
        return float(np.mean([r.seconds for r in self.history])) if self.history else 0.0


def _auxiliary_inputs(sequences: Ragged, index: np.ndarray, device: torch.device) -> tuple[Tensor, Tensor]:
    """Right-padded inputs (each sequence without its last item) and their lengths, for
    sequence-level objectives such as CL4SRec's."""
    items, lengths = sequences.padded(index)
    items[np.arange(len(index)), lengths - 1] = 0
    return torch.from_numpy(items[:, :-1]).to(device), torch.from_numpy(lengths - 1).to(device)


def _inputs(model: SequentialRecommender, sequences: Ragged, chosen: np.ndarray, weights: np.ndarray, max_len: int,
            device: torch.device) -> tuple[dict[str, Tensor], Tensor, tuple[Tensor, Tensor] | None]:
    """The training batch of sequences ``chosen`` (packed where the backbone attends by segment),
    their weights [B], and the auxiliary objective's inputs where the backbone has one."""
    batch = (packed_batch(sequences, chosen, max_len) if model.supports_segments
             else padded_batch(sequences, chosen))
    auxiliary = _auxiliary_inputs(sequences, chosen, device) if model.has_auxiliary_loss else None
    return ({k: torch.from_numpy(v).to(device) for k, v in vars(batch).items()},
            torch.from_numpy(weights).to(device), auxiliary)


class _Objective(torch.nn.Module):
    """A model and its training loss as one module: DDP must see the whole step as its forward,
    because the loss also reads the item table outside the model's own forward."""

    def __init__(self, model: SequentialRecommender):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Tensor], weights: Tensor, auxiliary: tuple[Tensor, Tensor] | None,
                config: TrainConfig, dtype: torch.dtype, scale: float = 1.0, auxiliary_scale: float = 1.0) -> Tensor:
        loss = next_item_loss(self.model, batch, weights, config, dtype) * scale
        if auxiliary is not None:
            loss = loss + self.model.auxiliary_loss(*auxiliary) * auxiliary_scale
        return loss


def _shard_loss(replica: DistributedDataParallel, world: World, sequences: Ragged, rows: np.ndarray,
                index: np.ndarray, seq_weight: np.ndarray, config: TrainConfig, max_len: int,
                dtype: torch.dtype, device: torch.device) -> Tensor:
    """This rank's loss on its share of the global batch ``index``, scaled so that DDP's mean of
    the ranks' gradients is the gradient of the one-process loss on the whole batch.

    That loss is the weighted mean over every scored position of the global batch, sum_r S_r / W,
    with S_r a rank's weighted sum and W the global weight (each sequence's weight times its
    positions). Packed shares hold different numbers of positions, so a rank's own mean S_r / W_r
    is scaled by N · W_r / W: known on every rank from the shared batch order, no communication.
    A share left empty by a small last batch scores one sequence at scale 0, so that every rank
    still takes part in the gradient all-reduce. A sequence-level auxiliary loss (a mean over
    sequences) is scaled by N · B_r / B; a contrastive one sees only its own rank's sequences.
    """
    model = replica.module.model
    local = world.shard(index)
    positions = (sequences.lengths[rows[index]] - 1) * seq_weight[index].astype(np.float64)
    scale = world.size * float(world.shard(positions).sum()) / float(positions.sum())
    auxiliary_scale = world.size * len(local) / len(index)
    if len(local) == 0:
        local = index[:1]
    return replica(*_inputs(model, sequences, rows[local], seq_weight[local], max_len, device), config, dtype, scale,
                   auxiliary_scale)


def _stop_reason(should_stop: Callable[[], bool] | None, config: TrainConfig, start: float,
                 world: World | None) -> str | None:
    """Why training must stop before the next batch, if it must; in a group the ranks agree (a
    cancellation or a time budget seen by one rank stops all of them at the same batch)."""
    code = 2 if should_stop is not None and should_stop() else int(
        config.time_budget is not None and time.perf_counter() - start > config.time_budget)
    return (None, "time_budget", "cancelled")[code if world is None else world.agree(code)]


def _pass(step: Callable[[np.ndarray], Tensor], optimizers: list[torch.optim.Optimizer],
          batches: Iterable[np.ndarray], stop: Callable[[], str | None]) -> tuple[float, int, str | None]:
    """One epoch's steps: the loss summed over sequences, their count, and why it stopped early if it did."""
    total, count = 0.0, 0
    for index in batches:
        if (reason := stop()) is not None:
            return total, count, reason
        loss = step(index)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        total += loss.item() * len(index)
        count += len(index)
    return total, count, None


def train(dataset: SequenceDataset, model_config: ModelConfig, config: TrainConfig, *,
          model: SequentialRecommender | None = None,
          on_epoch: Callable[[EpochReport], None] | None = None,
          should_stop: Callable[[], bool] | None = None, progress: bool = True) -> TrainResult:
    """Fit ``model_config`` on ``dataset`` (a fresh model unless ``model`` is given).

    With ``config.finetune_real``, data that holds weighted synthetic sequences and a first stage
    that ended on its own (patience or ``max_epochs``), :func:`finetune_real` follows. With
    ``config.insertion_ratio``, Insertion sequences join the synthetic ones first: drawn here, from
    the seed, so that the dataset version stays the record of what was generated.
    """
    stacked = stack_insertion(dataset, config.insertion_ratio, config.seed, model_config.max_len)
    result = _fit(stacked, model_config, config, model, on_epoch, should_stop, progress)
    if (config.finetune_real and config.synthetic_weight > 0 and stacked.num_synthetic > 0
            and result.stopped_by in ("patience", "max_epochs")):
        result = finetune_real(stacked, model_config, config, result, on_epoch=on_epoch,
                               should_stop=should_stop, progress=progress)
    result.insertion_sequences = stacked.num_synthetic - dataset.num_synthetic
    return result


def finetune_real(dataset: SequenceDataset, model_config: ModelConfig, config: TrainConfig, first: TrainResult, *,
                  on_epoch: Callable[[EpochReport], None] | None = None,
                  should_stop: Callable[[], bool] | None = None, progress: bool = True) -> TrainResult:
    """Continue ``first.model`` on the real sequences alone (fresh Adam at ``config.finetune_lr``,
    synthetic weight 0): a curriculum, synthetic-augmented data first and real data last, so that the
    model ends closest to the true distribution; a gentler rate keeps more of what the synthetic data
    taught about rare items. The stage is kept only if validation NDCG@20 rises above
    ``first.valid``; otherwise ``first.model`` is restored. Epochs number on from ``first.epochs``
    and ``improved``/``best_epoch`` refer to both stages; the time budget left over is shared.
    """
    remaining = None if config.time_budget is None else config.time_budget - first.seconds
    if remaining is not None and remaining <= 0:
        return first
    best, best_epoch, history = first.valid.get(STOP_METRIC, -math.inf), first.best_epoch, list(first.history)

    def relay(report: EpochReport) -> None:
        nonlocal best, best_epoch
        epoch, improved = report.epoch + first.epochs, report.valid[STOP_METRIC] > best
        if improved:
            best, best_epoch = report.valid[STOP_METRIC], epoch
        history.append(replace(report, epoch=epoch, best_epoch=best_epoch, improved=improved))
        if on_epoch is not None:
            on_epoch(history[-1])

    stage1 = copy.deepcopy(first.model.state_dict())
    second = _fit(dataset, model_config, replace(config, synthetic_weight=0.0, time_budget=remaining,
                                                 lr=config.finetune_lr, finetune_lr_scale=1.0),
                  first.model, relay, should_stop, progress)
    kept = second.valid.get(STOP_METRIC, -math.inf) > first.valid.get(STOP_METRIC, -math.inf)
    if not kept:
        first.model.load_state_dict(stage1)
    return TrainResult(first.model, best_epoch, first.epochs + second.epochs, second.valid if kept else first.valid,
                       second.stopped_by, first.seconds + second.seconds,
                       max(first.peak_memory_mb, second.peak_memory_mb), history, kept)


def continue_on_real(dataset: SequenceDataset, model: SequentialRecommender, config: TrainConfig, *,
                     valid: dict[str, float], best_epoch: int, epochs: int, seconds: float,
                     on_epoch: Callable[[EpochReport], None] | None = None,
                     should_stop: Callable[[], bool] | None = None, progress: bool = True) -> TrainResult:
    """:func:`finetune_real` for a model trained earlier (a copy of it; ``model`` is left as it is),
    described by its validation metrics and epochs: the real-data stage even where its first stage
    had no synthetic data, e.g. a fine-tuned base model as RSIR's first teacher."""
    first = TrainResult(copy.deepcopy(model), best_epoch, epochs, valid, "patience", seconds, peak_memory_mb=0.0)
    return finetune_real(dataset, model.config, config, first, on_epoch=on_epoch, should_stop=should_stop,
                         progress=progress)


def _fit(dataset: SequenceDataset, model_config: ModelConfig, config: TrainConfig,
         model: SequentialRecommender | None, on_epoch: Callable[[EpochReport], None] | None,
         should_stop: Callable[[], bool] | None, progress: bool) -> TrainResult:
    """One stage: Adam on ``dataset`` from ``model`` (or a fresh one) until a stopping rule fires."""
    keep_freed_memory()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    world = current()
    device = resolve_device(config.device) if world is None else world.device
    dtype = compute_dtype(config.precision, device)
    if model is None:
        model = build_model(model_config, dataset.num_items)
    model.to(device)
    objective, replica = _Objective(model), None
    if world is not None:  # rank 0's weights are broadcast; dropout and negatives differ per rank
        replica = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None)
        torch.manual_seed(config.seed + world.rank)
    main = world is None or world.is_main
    sequences, synthetic = dataset.training(model_config.max_len)
    # a sequence of one item has no next-item target; one of weight 0 adds nothing to the loss
    rows = np.flatnonzero((sequences.lengths >= 2) & ~(synthetic & (config.synthetic_weight == 0)))
    seq_weight = np.where(synthetic[rows], config.synthetic_weight, 1.0).astype(np.float32)
    if len(rows) == 0:
        raise DataError("no training sequence has two or more items")
    valid_split = sample_users(dataset.evaluation("valid", model.config.max_len), config.valid_users, config.seed)

    def step(index: np.ndarray) -> Tensor:
        if replica is None or world is None:
            return objective(*_inputs(model, sequences, rows[index], seq_weight[index], model_config.max_len, device),
                             config, dtype)
        return _shard_loss(replica, world, sequences, rows, index, seq_weight, config, model_config.max_len, dtype,
                           device)

    start = time.perf_counter()
    best_metric, best_epoch, best_state, best_valid = -math.inf, 0, None, {}
    progress_metric, progress_epoch = -math.inf, 0  # what patience counts from (``min_delta``)
    history: list[EpochReport] = []
    stopped_by = "max_epochs"
    # counts to where early stopping would end if validation stopped improving now: an honest ETA
    bar = tqdm(total=min(config.max_epochs, config.patience), desc=f"train {model_config.name}", unit="epoch",
               disable=not (progress and main), dynamic_ncols=True)
    with adam(model, config, world) as optimizers:
        for epoch in range(1, config.max_epochs + 1):
            epoch_start = time.perf_counter()
            model.train()
            total, count, reason = _pass(step, optimizers, random_batches(len(rows), config.batch_size, rng),
                                         lambda: _stop_reason(should_stop, config, start, world))
            stopped_by = reason or stopped_by
            if world is not None:  # each rank's loss is its share times N: the batch loss is their mean
                total = float(world.sum(np.array([total]))[0]) / world.size
            if stopped_by == "cancelled" or (stopped_by == "time_budget" and best_state is not None):
                break
            valid = EvalResult(rank_targets(model, valid_split, batch_size=config.eval_batch_size, device=device,
                                            world=world)).metrics()
            improved = valid[STOP_METRIC] > best_metric
            if valid[STOP_METRIC] > progress_metric * (1 + config.min_delta):
                progress_metric, progress_epoch = valid[STOP_METRIC], epoch
            if improved:
                best_metric, best_epoch, best_valid = valid[STOP_METRIC], epoch, valid
                best_state = copy.deepcopy(model.state_dict())
            report = EpochReport(epoch, total / max(count, 1), valid, time.perf_counter() - epoch_start,
                                 best_epoch, improved)
            history.append(report)
            bar.total = min(config.max_epochs, progress_epoch + config.patience)
            bar.set_postfix(loss=f"{report.loss:.4f}", ndcg20=f"{valid[STOP_METRIC]:.4f}", best=best_epoch,
                            s_per_epoch=f"{report.seconds:.1f}", refresh=False)
            bar.update()
            if main:
                logger.info("epoch %d loss %.4f valid %s %.4f (best epoch %d)", epoch, report.loss, STOP_METRIC,
                            valid[STOP_METRIC], best_epoch)
            if on_epoch is not None:
                on_epoch(report)
            if stopped_by == "time_budget":
                break
            if epoch - progress_epoch >= config.patience:
                stopped_by = "patience"
                break
    bar.close()
    release_buffers()
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(model, best_epoch, len(history), best_valid, stopped_by, time.perf_counter() - start,
                       peak_memory_mb(device), history)
