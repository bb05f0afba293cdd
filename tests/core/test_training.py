"""Training learns, stops when it should, wastes nothing on padding, and checkpoints round-trip."""

from __future__ import annotations

import copy
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from rsir.augmentation import stack_insertion
from rsir.batching import packed_batch, padded_batch, random_batches
from rsir.checkpoint import CheckpointError, checkpoint_bytes, load_checkpoint, save_checkpoint
from rsir.config import ModelConfig, TrainConfig
from rsir.datasets import Ragged
from rsir.evaluation import EvalResult, evaluate
from rsir.losses import next_item_loss
from rsir.models import build_model
from rsir.training import STOP_METRIC, finetune_real, train

SMALL = ModelConfig(dim=32, heads=2, max_len=20, dropout=0.1)


def _popularity_recall(dataset) -> float:
    """Recall@10 of ranking by training popularity (what a model must beat to have learned order)."""
    train_rows, _ = dataset.training(50)
    counts = np.bincount(train_rows.values, minlength=dataset.num_items + 1).astype(float)
    counts[0] = -1
    split = dataset.evaluation("test", 50)
    ranks = np.array([(counts > counts[t]).sum() for t in split.targets])
    return EvalResult(ranks).metrics()["recall@10"]


@pytest.mark.parametrize(("loss", "precision", "item_updates"),
                         [("ce", "auto", "auto"), ("ce", "fp32", "auto"), ("ce", "bf16", "auto"),
                          ("sampled", "auto", "auto"), ("sampled", "auto", "dense")])
def test_sasrec_learns_sequential_structure(small_dataset, loss, precision, item_updates):
    result = train(small_dataset, SMALL, TrainConfig(loss=loss, negatives=32, max_epochs=12, patience=12, lr=3e-3,
                                                     precision=precision, item_updates=item_updates), progress=False)
    recall = evaluate(result.model, small_dataset, "test").metrics()["recall@10"]
    assert recall > 2 * _popularity_recall(small_dataset)
    assert result.valid["ndcg@20"] == max(r.valid["ndcg@20"] for r in result.history)


def test_patience_stops_training(tiny_dataset):
    result = train(tiny_dataset, SMALL, TrainConfig(max_epochs=200, patience=2, lr=0.5), progress=False)
    assert result.stopped_by == "patience"
    assert result.epochs == result.best_epoch + 2
    best = sum(r.seconds for r in result.history[:result.best_epoch])
    assert 0 < result.seconds_to_best == pytest.approx(best) and best < sum(r.seconds for r in result.history)


def test_min_delta_stops_on_a_plateau_and_keeps_the_best_epoch(small_dataset):
    config = TrainConfig(max_epochs=30, patience=2, lr=3e-3)
    plain = train(small_dataset, SMALL, config, progress=False)
    strict = train(small_dataset, SMALL, replace(config, min_delta=0.5), progress=False)
    assert strict.epochs < plain.epochs and strict.stopped_by == "patience"
    assert [r.valid for r in strict.history] == [r.valid for r in plain.history[:strict.epochs]]
    assert strict.valid["ndcg@20"] == max(r.valid["ndcg@20"] for r in strict.history)


def test_cancellation_stops_within_one_batch(small_dataset):
    calls = []

    def should_stop() -> bool:
        calls.append(1)
        return len(calls) > 3

    result = train(small_dataset, SMALL, TrainConfig(batch_size=16, max_epochs=5), should_stop=should_stop,
                   progress=False)
    assert result.stopped_by == "cancelled"
    assert len(calls) == 4 and result.epochs == 0


def test_time_budget_keeps_a_model(small_dataset):
    result = train(small_dataset, SMALL, TrainConfig(time_budget=1e-9, max_epochs=50), progress=False)
    assert result.stopped_by == "time_budget" and result.epochs == 1


def _tensors(batch) -> dict:
    return {k: torch.from_numpy(v) for k, v in vars(batch).items()}


@pytest.mark.parametrize("loss", ["ce", "sampled"])
def test_packed_and_padded_batches_give_the_same_loss(loss):
    torch.manual_seed(0)
    model = build_model(SMALL, num_items=30).eval()
    rows = Ragged.from_list([np.array([1, 2, 3]), np.array([4, 5, 6, 7, 8]), np.array([9, 10])])
    index = np.arange(3)
    packed = packed_batch(rows, index, width=8)
    assert packed.tokens.shape == (1, 8)  # 2 + 4 + 1 inputs fit in one row: no padding at all
    weights = torch.tensor([1.0, 0.5, 2.0])
    cfg = TrainConfig(loss=loss, negatives=16)
    torch.manual_seed(1)
    a = next_item_loss(model, _tensors(packed), weights, cfg)
    torch.manual_seed(1)
    b = next_item_loss(model, _tensors(padded_batch(rows, index)), weights, cfg)
    assert torch.allclose(a, b, atol=1e-5)


def test_sampled_negatives_exclude_the_sequence_items():
    """With every other item in the sequence, the only admissible negative is the one outside it."""
    torch.manual_seed(0)
    model = build_model(SMALL, num_items=5).eval()
    batch = _tensors(padded_batch(Ragged.from_list([np.array([1, 2, 3, 4])]), np.arange(1)))
    torch.manual_seed(123)
    loss = next_item_loss(model, batch, torch.ones(1), TrainConfig(loss="sampled", negatives=64))
    torch.manual_seed(123)
    n5 = int((torch.randint(1, 6, (64,)) == 5).sum())  # the same draws; items 1..4 must be masked
    h = model(torch.tensor([[1, 2, 3]]))[0]
    pos = (h * model.item_emb.weight[[2, 3, 4]]).sum(-1)
    neg = h @ model.item_emb.weight[5]
    expected = -(pos - torch.logsumexp(torch.stack([pos, neg + np.log(n5)]), 0)).mean()
    assert 0 < n5 < 64
    assert torch.allclose(loss, expected, atol=1e-5)


def test_batches_are_random_and_packed_without_waste():
    rng = np.random.default_rng(0)
    lengths = rng.integers(2, 52, size=1000)
    rows = Ragged.from_list([rng.integers(1, 100, size=n) for n in lengths])
    batches = list(random_batches(len(rows), 64, np.random.default_rng(1)))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    assert not np.array_equal(batches[0], np.arange(64))
    batch = packed_batch(rows, batches[0], width=50)
    real = (batch.targets > 0).sum()
    assert real == (lengths[batches[0]] - 1).sum()  # every next-item pair is there once
    assert real / batch.tokens.size > 0.7  # padded rows would be ~50% empty here
    for b in range(64):  # each sequence's tokens are contiguous and in order
        mask = batch.sequence == b
        seq = rows.row(batches[0][b])
        assert batch.tokens[mask].tolist() == seq[:-1].tolist()
        assert batch.targets[mask].tolist() == seq[1:].tolist()


def test_checkpoint_round_trip_and_corruption(tmp_path, small_dataset):
    torch.manual_seed(0)
    for name in ("sasrec", "hstu", "gru", "cl4srec"):
        model = build_model(ModelConfig(name=name, dim=16, max_len=20), small_dataset.num_items).eval()
        path = save_checkpoint(tmp_path / f"{name}.pt", model, TrainConfig(), small_dataset.version, {"x": 1.0})
        loaded, info = load_checkpoint(path)
        assert info.model_config == model.config and info.dataset_version == small_dataset.version
        assert info.metrics == {"x": 1.0} and info.train_config == TrainConfig()
        items = torch.randint(1, small_dataset.num_items + 1, (3, 9))
        assert torch.allclose(loaded(items), model(items))
    payload = checkpoint_bytes(model)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(payload[: len(payload) // 2])
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"format": "something-else"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an rsir checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def _with_noise(dataset):
    """``dataset`` plus 40 synthetic sequences of random items."""
    rng = np.random.default_rng(0)
    return dataset.with_synthetic([rng.integers(1, dataset.num_items + 1, size=6) for _ in range(40)])


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_zero_synthetic_weight_trains_as_on_the_real_data_alone(tiny_dataset):
    """Weight 0 leaves synthetic sequences out of the batches (no compute spent on them), so the
    run is the very run on the real data; a positive weight changes it."""
    augmented = _with_noise(tiny_dataset)
    config = TrainConfig(max_epochs=2, patience=2, seed=3)
    real = train(tiny_dataset, SMALL, config, progress=False).model.state_dict()
    for weight, same in ((0.0, True), (0.5, False)):
        model = train(augmented, SMALL, replace(config, synthetic_weight=weight), progress=False).model.state_dict()
        assert _same(real, model) is same


def test_insertion_ratio_trains_on_the_stacked_data(tiny_dataset):
    """``insertion_ratio`` is the very run on ``stack_insertion``'s data and changes the run; without
    synthetic sequences there is nothing to match, so the base run is unchanged."""
    augmented = _with_noise(tiny_dataset)
    config = TrainConfig(max_epochs=2, patience=2, seed=3, synthetic_weight=0.5)

    def fit(data, ratio):
        return train(data, SMALL, replace(config, insertion_ratio=ratio), progress=False)

    stacked = fit(augmented, 1.0)
    explicit = fit(stack_insertion(augmented, 1.0, seed=3, max_len=SMALL.max_len), 0.0)
    assert _same(stacked.model.state_dict(), explicit.model.state_dict())
    assert (stacked.insertion_sequences, explicit.insertion_sequences) == (augmented.num_synthetic, 0)
    assert not _same(stacked.model.state_dict(), fit(augmented, 0.0).model.state_dict())
    real = fit(tiny_dataset, 1.0)
    assert _same(real.model.state_dict(), fit(tiny_dataset, 0.0).model.state_dict()) and real.insertion_sequences == 0


def test_real_data_stage_numbers_on_and_returns_the_better_stage(tiny_dataset):
    augmented = _with_noise(tiny_dataset)
    config = TrainConfig(max_epochs=3, patience=3, seed=1)
    first = train(augmented, SMALL, config, progress=False)
    reports = []
    both = train(augmented, SMALL, replace(config, finetune_real=True), on_epoch=reports.append, progress=False)
    assert both.epochs > first.epochs and [r.epoch for r in reports] == list(range(1, both.epochs + 1))
    assert [r.valid for r in reports[:first.epochs]] == [r.valid for r in first.history]
    scores = [r.valid[STOP_METRIC] for r in reports]
    assert both.finetune_kept == (max(scores[first.epochs:]) > first.valid[STOP_METRIC])
    assert both.valid[STOP_METRIC] == max(scores) and scores[both.best_epoch - 1] == max(scores)
    assert [r.improved for r in reports] == [s > max(scores[:i], default=-1) for i, s in enumerate(scores)]
    valid = evaluate(both.model, augmented, "valid").metrics()
    assert valid[STOP_METRIC] == pytest.approx(both.valid[STOP_METRIC], abs=1e-6)


@pytest.mark.parametrize("kept", [True, False])
def test_real_data_stage_is_kept_only_if_validation_rises(tiny_dataset, kept):
    """A first stage claiming no score keeps any second stage; one claiming a perfect score gets
    its own weights back."""
    augmented = _with_noise(tiny_dataset)
    config = TrainConfig(max_epochs=2, patience=2, seed=1)
    first = train(augmented, SMALL, config, progress=False)
    first = replace(first, valid={} if kept else {STOP_METRIC: 1.0})
    before = {k: v.clone() for k, v in first.model.state_dict().items()}
    result = finetune_real(augmented, SMALL, config, first, progress=False)
    after = result.model.state_dict()
    assert result.finetune_kept is kept and result.epochs == 4
    assert all(torch.equal(before[k], after[k]) for k in before) is not kept
    if kept:
        assert result.best_epoch in (3, 4) and result.valid == result.history[result.best_epoch - 1].valid
    else:
        assert (result.best_epoch, result.valid) == (first.best_epoch, first.valid)


def test_real_data_stage_learning_rate_scale_moves_the_weights_less(tiny_dataset):
    """Adam's steps are about ``lr`` long, so a 0.1× stage moves stage one's weights far less."""
    augmented = _with_noise(tiny_dataset)
    config = TrainConfig(max_epochs=1, patience=1, seed=1)
    first = replace(train(augmented, SMALL, config, progress=False), valid={})  # any second stage is kept
    start = {k: v.clone() for k, v in first.model.state_dict().items()}

    def moved(scale: float) -> float:
        stage1 = replace(first, model=copy.deepcopy(first.model))
        tuned = finetune_real(augmented, SMALL, replace(config, finetune_lr_scale=scale), stage1, progress=False)
        return sum(float((tuned.model.state_dict()[k] - v).float().norm()) for k, v in start.items())

    full, gentle = moved(1.0), moved(0.1)
    assert 0 < gentle < 0.5 * full


def test_real_data_stage_skips_without_synthetic_data_or_budget_and_obeys_cancellation(tiny_dataset):
    config = TrainConfig(max_epochs=2, patience=2, seed=1, finetune_real=True)
    plain = train(tiny_dataset, SMALL, config, progress=False)
    assert plain.finetune_kept is None and plain.epochs == 2  # nothing synthetic: one stage
    augmented = _with_noise(tiny_dataset)
    first = train(augmented, SMALL, replace(config, finetune_real=False), progress=False)
    assert finetune_real(augmented, SMALL, replace(config, time_budget=first.seconds), first) is first
    reports = []
    cancelled = train(augmented, SMALL, config, on_epoch=reports.append, should_stop=lambda: len(reports) > 2,
                      progress=False)
    assert cancelled.stopped_by == "cancelled" and cancelled.epochs == 3


_ROUNDS = """
import resource, sys
import numpy as np
if sys.argv[1] == "keep":
    from rsir.resources import keep_freed_memory
    assert keep_freed_memory()
faults = []
for _ in range(6):  # what a training step does: tensors of a few MB made, used and freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [np.ones(3 << 18) for _ in range(12)]  # 12 x 6 MiB
    del blocks
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(faults[2:]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_training_keeps_freed_memory_instead_of_faulting_in_new_pages():
    """Without ``keep_freed_memory`` glibc gives each round's freed blocks back and the next round
    touches fresh pages; with it, later rounds reuse the memory (the pages are faulted in once)."""
    faults = {mode: int(subprocess.run([sys.executable, "-c", _ROUNDS, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("default", "keep")}
    assert faults["default"] > 2_000 and faults["keep"] < 200, faults
