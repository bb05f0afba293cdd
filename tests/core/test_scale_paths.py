"""The paths that keep cost linear at scale give the results of the simple ones (issue #36): exact
hash-based merge de-duplication, the chunked log reader, the streamed save, the automatic switch to
the sampled softmax, lazy item-table updates with it, evaluation's catalogue-bounded block and
validation's bounded sample of users."""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
import torch

from rsir import logs, losses
from rsir.batching import packed_batch
from rsir.config import ModelConfig, TrainConfig
from rsir.datasets import Ragged, SequenceDataset
from rsir.dedup import first_new, prefix_hashes
from rsir.evaluation import EvalResult, evaluate, rank_targets, sample_users
from rsir.generation import GeneratedBatch, GenerationStats, merge_generated
from rsir.logs import read_interactions, write_interactions
from rsir.losses import next_item_loss
from rsir.models import build_model
from rsir.optim import adam, lazy_item_updates
from rsir.scoring import RANK_BLOCK_ELEMENTS, rank_block
from rsir.training import train

SMALL_MODEL = ModelConfig(dim=32, heads=2, max_len=20, dropout=0.1)


def _reference_merge(dataset, batches):
    """The merge as a Python set of bytes (the implementation before #36)."""
    pairs = sorted(((int(r), s) for b in batches for r, s in zip(b.row_ids, b.sequences, strict=True)),
                   key=lambda p: p[0])
    train, _ = dataset.training(dataset.sequences.lengths.max(initial=1))
    seen = {s.tobytes() for s in dataset.sequences.to_list()} | {s.tobytes() for s in train.to_list()}
    kept = []
    for _, seq in pairs:
        key = seq.astype(np.int64).tobytes()
        if key not in seen:
            seen.add(key)
            kept.append(seq)
    return dataset.with_synthetic(kept), len(pairs) - len(kept)


def _generated(dataset, count=400, seed=0):
    """Random sequences, a share of them copies of real or training sequences or of each other, in
    shuffled batches."""
    rng = np.random.default_rng(seed)
    train, _ = dataset.training(50)
    sequences = [rng.integers(1, dataset.num_items + 1, int(rng.integers(2, 9))) for _ in range(count)]
    for i in rng.choice(count, count // 5, replace=False):
        source = rng.integers(3)
        sequences[i] = (dataset.sequence(int(rng.integers(len(dataset)))) if source == 0 else
                        train.row(int(rng.integers(len(train)))) if source == 1 else
                        sequences[int(rng.integers(count))]).copy()
    ids = rng.permutation(count * 3)[:count]
    return [GeneratedBatch(ids[lo:lo + 64], sequences[lo:lo + 64], GenerationStats()) for lo in range(0, count, 64)]


def test_merge_equals_the_set_based_merge(small_dataset):
    batches = _generated(small_dataset)
    merged, counts = merge_generated(small_dataset, batches)
    expected, duplicates = _reference_merge(small_dataset, batches)
    assert merged.version == expected.version
    assert counts == {"generated": 400, "duplicates": duplicates, "added": 400 - duplicates} and duplicates > 40
    no_dedup, counts = merge_generated(small_dataset, batches, dedup=False)
    assert counts["added"] == 400 and len(no_dedup) == len(small_dataset) + 400


def test_dedup_stays_exact_when_every_hash_collides(monkeypatch):
    rows = Ragged.from_list([np.array([1, 2]), np.array([2, 1]), np.array([1, 2]), np.array([3]), np.array([4])])
    existing = Ragged.from_list([np.array([3]), np.array([4, 4, 9])])
    monkeypatch.setattr("rsir.dedup.prefix_hashes", lambda r, drops: [np.zeros(len(r), np.uint64) for _ in drops])
    assert first_new(existing, [0], rows).tolist() == [True, True, False, False, True]
    assert first_new(existing, [0, np.array([0, 2])], rows).tolist() == [True, True, False, False, False]


def test_hashes_see_order_length_and_prefixes():
    rows = Ragged.from_list([np.array([1, 2]), np.array([2, 1]), np.array([1, 2, 0]), np.array([1, 2])])
    whole, cut = prefix_hashes(rows, [0, np.array([0, 0, 1, 0])])
    assert len(set(whole[:3].tolist())) == 3 and whole[0] == whole[3]
    assert cut[2] == whole[0] and (cut[[0, 1, 3]] == whole[[0, 1, 3]]).all()


def test_the_log_reader_is_the_same_in_small_chunks(tmp_path, small_dataset, monkeypatch):
    path = tmp_path / "log.csv"
    write_interactions(path, small_dataset.users * 7, small_dataset.sequences.to_list())  # string order ≠ numeric
    whole = read_interactions(path)
    monkeypatch.setattr(logs, "CHUNK_ROWS", 97)
    chunked = read_interactions(path)
    for field in ("users", "offsets", "items"):
        np.testing.assert_array_equal(getattr(chunked, field), getattr(whole, field))
    assert chunked.user_labels == whole.user_labels == sorted(whole.user_labels)
    assert chunked.item_labels == whole.item_labels


def test_save_streams_the_same_bytes_as_to_bytes(tmp_path, small_dataset):
    small_dataset.save(tmp_path / "d.npz")
    assert (tmp_path / "d.npz").read_bytes() == small_dataset.to_bytes()
    assert SequenceDataset.load(tmp_path / "d.npz").version == small_dataset.version


def test_auto_loss_switches_to_sampled_beyond_the_budget():
    config = TrainConfig()
    assert config.loss == "auto"
    fits = losses.FULL_SOFTMAX_BUDGET_BYTES // (config.batch_size * 50 * 4) - 1  # the largest catalogue that fits
    assert losses.resolve_loss(config, fits, 50) == "ce"
    assert losses.resolve_loss(config, fits + 1, 50) == "sampled"
    assert losses.resolve_loss(TrainConfig(loss="ce"), 10**7, 50) == "ce"
    assert losses.resolve_loss(TrainConfig(loss="sampled"), 10, 50) == "sampled"


def _batch(items: int, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, items + 1, (4, 6), generator=g)
    return {"tokens": tokens, "targets": torch.randint(1, items + 1, (4, 6), generator=g),
            "segments": torch.ones(4, 6, dtype=torch.long), "sequence": torch.arange(4)[:, None].expand(4, 6)}


def test_auto_loss_is_ce_within_the_budget_and_says_when_it_switches(monkeypatch, caplog):
    torch.manual_seed(0)
    model = build_model(ModelConfig(dim=16, layers=1, heads=1, max_len=6, dropout=0.0), 50).eval()
    batch, weights = _batch(50), torch.ones(4)
    auto, ce = TrainConfig(negatives=8), TrainConfig(loss="ce", negatives=8)
    with caplog.at_level(logging.WARNING, logger="rsir.losses"):
        assert losses.next_item_loss(model, batch, weights, auto).item() == losses.next_item_loss(
            model, batch, weights, ce).item()
        assert not caplog.records
        monkeypatch.setattr(losses, "FULL_SOFTMAX_BUDGET_BYTES", 1000)
        losses._announce.cache_clear()
        torch.manual_seed(1)
        switched = losses.next_item_loss(model, batch, weights, auto)
        torch.manual_seed(1)
        assert switched.item() == losses.next_item_loss(model, batch, weights, TrainConfig(loss="sampled",
                                                                                          negatives=8)).item()
        losses.next_item_loss(model, batch, weights, auto)
    assert len(caplog.records) == 1 and "sampled softmax (8 negatives)" in caplog.records[0].getMessage()


@pytest.mark.parametrize(("items", "rows"), [(1_000, 1024), (12_101, 519), (121_010, 256), (1_210_100, 55),
                                             (10**9, 8)])
def test_rank_block_bounds_the_scores_by_the_catalogue(items, rows):
    assert rank_block(items, 1024) == rows and rank_block(items, 100) == min(rows, 100)
    assert rows == 8 or rows * (items + 1) <= RANK_BLOCK_ELEMENTS


def test_lazy_item_updates_move_only_the_rows_a_step_touched():
    """With the sampled softmax the item table gets sparse gradients and SparseAdam: a row the
    second step does not touch stays where the first step left it, where dense Adam's momentum
    moves it; the full softmax, weight decay and "dense" keep one dense Adam."""
    model = build_model(SMALL_MODEL, num_items=500)
    sampled = TrainConfig(loss="sampled", negatives=16, lr=0.01)
    for config in (TrainConfig(loss="ce"), replace(sampled, weight_decay=0.1), replace(sampled, item_updates="dense")):
        assert not lazy_item_updates(model, config, None)
    assert lazy_item_updates(model, sampled, None)
    sequences = Ragged.from_list([np.arange(1, 11), np.arange(101, 111)])
    moved = {}
    for config in (sampled, replace(sampled, item_updates="dense")):
        torch.manual_seed(0)
        model = build_model(SMALL_MODEL, num_items=500)
        with adam(model, config, None) as optimizers:
            assert model.item_emb.sparse == (config.item_updates == "auto")
            touched = []
            for row in (0, 1):
                batch = packed_batch(sequences, np.array([row]), SMALL_MODEL.max_len)
                loss = next_item_loss(model, {k: torch.from_numpy(v) for k, v in vars(batch).items()},
                                      torch.ones(1), config)
                for optimizer in optimizers:
                    optimizer.zero_grad(set_to_none=True)
                before = model.item_emb.weight.detach().clone()
                loss.backward()
                grad = model.item_emb.weight.grad
                touched.append(set(grad.coalesce().indices()[0].tolist()) if grad.is_sparse
                               else set(torch.nonzero(grad.abs().sum(1)).flatten().tolist()))
                for optimizer in optimizers:
                    optimizer.step()
        assert not model.item_emb.sparse
        first_only = sorted(touched[0] - touched[1])
        assert first_only
        moved[config.item_updates] = (model.item_emb.weight.detach()[first_only] != before[first_only]).any(1)
    assert not moved["auto"].any()
    assert moved["dense"].all()


def test_the_full_softmax_adds_the_lookups_gradient_row_by_row():
    """In one process the input lookups give sparse gradients, which the loss's dense gradient of the
    whole table absorbs: the same dense gradient as the dense lookups', without a zeroed table."""
    sequences = Ragged.from_list([np.arange(1, 11), np.arange(101, 111), np.arange(5, 40, 3)])
    batch = packed_batch(sequences, np.array([0, 1, 2]), SMALL_MODEL.max_len)
    tensors = {k: torch.from_numpy(v) for k, v in vars(batch).items()}
    config = TrainConfig(loss="ce", precision="fp32")
    model = build_model(SMALL_MODEL, num_items=500)
    torch.manual_seed(0)  # the same dropout both times
    next_item_loss(model, tensors, torch.ones(3), config).backward()
    dense = model.item_emb.weight.grad.clone()
    model.zero_grad(set_to_none=True)
    with adam(model, config, None):
        assert model.item_emb.sparse
        torch.manual_seed(0)
        next_item_loss(model, tensors, torch.ones(3), config).backward()
    grad = model.item_emb.weight.grad
    assert not grad.is_sparse and not model.item_emb.sparse
    torch.testing.assert_close(grad, dense, rtol=1e-6, atol=1e-8)


def test_validation_ranks_the_same_bounded_sample_of_users_every_epoch(small_dataset):
    split = small_dataset.evaluation("valid", SMALL_MODEL.max_len)
    assert sample_users(split, 0, seed=0) is split and sample_users(split, len(split.targets), 0) is split
    sample = sample_users(split, 40, seed=3)
    assert len(sample.targets) == 40 and len(sample.inputs) == len(sample.history) == 40
    assert np.array_equal(sample.targets, sample_users(split, 40, seed=3).targets)
    result = train(small_dataset, SMALL_MODEL, TrainConfig(max_epochs=2, valid_users=40, seed=3), progress=False)
    ranked = EvalResult(rank_targets(result.model, sample)).metrics()
    assert ranked == pytest.approx(result.valid)
    assert ranked != pytest.approx(evaluate(result.model, small_dataset, "valid").metrics())
