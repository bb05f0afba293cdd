"""Batched generation against a plain per-sequence oracle of Algorithm 1, and every switch."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from rsir.generation import generate as batched_generate
from rsir.generation import merge_generated, source_sequences
from rsir.parallel import ordered_streams
from rsir.reference import oracle
from rsir.scoring import PRODUCTS, CatalogueScorer, count_above, top_items
from rsir.synthetic import synthetic_dataset
from rsir.training import train


def run(model, dataset, cfg, **kwargs) -> dict[int, list[int]]:
    result: dict[int, list[int]] = {}
    for batch in batched_generate(model, dataset, cfg, **kwargs):
        for r, s in zip(batch.row_ids, batch.sequences, strict=True):
            assert int(r) not in result
            result[int(r)] = s.tolist()
    return result


@pytest.fixture(scope="module")
def data():
    return synthetic_dataset(num_users=60, num_items=40, num_clusters=4, seed=11)


@pytest.fixture(scope="module", params=["sasrec", "gru", "hstu"])
def model(request, data):
    torch.manual_seed(0)
    cfg = ModelConfig(name=request.param, dim=16, heads=2, max_len=20, dropout=0.0)
    return train(data, cfg, TrainConfig(max_epochs=3, lr=1e-2), progress=False).model


@pytest.mark.parametrize(
    "cfg",
    [
        GenerationConfig(tau=5, p=0.5, m=3, max_len=12),
        GenerationConfig(tau=3, p=0.3, m=2, prefix="random", target="future", max_len=15),
        GenerationConfig(tau=math.inf, p=0.5, m=2, max_len=8, min_len=4),
        GenerationConfig(tau=10, p=1.0, m=2, max_len=20, seed=4),
    ],
    ids=["authors", "paper-reading", "no-fidelity", "own-items"],
)
def test_batched_equals_oracle(model, data, cfg):
    batched = run(model, data, cfg)
    assert batched == oracle(model, data, cfg)
    assert batched  # the configuration produces sequences at all


def test_result_does_not_depend_on_chunks_or_shards(model, data):
    cfg = GenerationConfig(tau=8, p=0.5, m=3, top_k=3, temperature=0.7, max_len=12)
    whole = run(model, data, cfg)
    assert run(model, data, replace(cfg, batch_rows=7)) == whole
    assert run(model, data, replace(cfg, batch_rows=7), workers=3) == whole
    shards = [run(model, data, cfg, shard=(i, 3)) for i in range(3)]
    assert sorted(k for s in shards for k in s) == sorted(whole)
    assert {k: v for s in shards for k, v in s.items()} == whole


def test_seed_determines_sampling(model, data):
    cfg = GenerationConfig(tau=8, p=0.5, m=3, top_k=5, max_len=12)
    assert run(model, data, cfg) == run(model, data, cfg)
    assert run(model, data, cfg) != run(model, data, replace(cfg, seed=1))


def _total(model, data, cfg):
    last = None
    for batch in batched_generate(model, data, cfg):
        last = batch.stats
    return last


def test_workers_stream_the_same_batches_and_running_stats(model, data):
    cfg = GenerationConfig(tau=8, p=0.5, m=3, max_len=12, batch_rows=20)
    threads = torch.get_num_threads()
    serial = list(batched_generate(model, data, replace(cfg, batch_rows=10), workers=1))
    parallel = list(batched_generate(model, data, cfg, workers=2))  # batch_rows is split: the same chunks
    assert torch.get_num_threads() == threads  # the one-thread-per-worker setting is undone
    def content(batches):
        return [(b.row_ids.tolist(), [q.tolist() for q in b.sequences]) for b in batches]

    assert len(serial) > 3 and content(parallel) == content(serial)  # the same stream, in the same order
    assert [b.stats for b in parallel] == [b.stats for b in serial]
    assert serial[-1].stats.rows == len(source_sequences(data, cfg, 20)[1]) * cfg.m  # the whole run, every chunk
    with pytest.raises(ValueError, match="workers"):
        next(batched_generate(model, data, cfg, workers=-1))


def test_chunks_are_equal_so_no_worker_waits_on_a_long_one(model, data):
    cfg = GenerationConfig(tau=8, p=0.5, m=3, max_len=12)
    sources = len(source_sequences(data, cfg, 20)[1])
    most = sources * 3 // 5  # two chunks: 60 % and 40 % if cut at the largest size
    batches = list(batched_generate(model, data, replace(cfg, batch_rows=most * cfg.m), workers=1))
    chunk_rows = sorted({b.stats.rows for b in batches})  # running totals: after the first chunk, after both
    assert chunk_rows == [-(-sources // 2) * cfg.m, sources * cfg.m]


def test_default_chunk_size_follows_the_fidelity_check():
    assert GenerationConfig().decode_rows == 131072  # most rows stop within two steps: few large chunks
    assert GenerationConfig(tau=math.inf).decode_rows == 16384  # rows decode to full length
    assert GenerationConfig(tau=math.inf, batch_rows=7).decode_rows == 7
    with pytest.raises(ValueError, match="batch_rows"):
        GenerationConfig(batch_rows=0)


def test_overlapping_parallel_generations_leave_every_threads_count_alone(model, data):
    """Torch's thread count is per thread: chunks run at 1 in their own workers, the consumer keeps
    its count throughout, and threads started afterwards inherit the consumer's, not a worker's 1."""
    cfg = GenerationConfig(tau=8, p=0.5, m=3, max_len=12, batch_rows=20)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        first, second = batched_generate(model, data, cfg, workers=2), batched_generate(model, data, cfg, workers=2)
        next(first), next(second)  # both suspended inside their parallel sections
        assert torch.get_num_threads() == 3
        first.close()  # a consumer that stops early, while the other still runs
        assert torch.get_num_threads() == 3
        assert list(second)
        assert torch.get_num_threads() == 3
        later: list[int] = []
        thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
        thread.start()
        thread.join()
        assert later == [3]
    finally:
        torch.set_num_threads(threads)


def test_parallel_chunks_run_at_one_intra_op_thread():
    def task() -> list[int]:
        time.sleep(0.01)  # so that workers overlap
        return [torch.get_num_threads()]

    assert [n for items in ordered_streams([task] * 6, workers=2) for n in items] == [1] * 6
    assert [n for items in ordered_streams([task], workers=1) for n in items] == [torch.get_num_threads()]


def test_tau_one_accepts_fewer_steps_than_no_fidelity(model, data):
    strict = _total(model, data, GenerationConfig(tau=1, p=0.5, m=2, max_len=12))
    loose = _total(model, data, GenerationConfig(tau=math.inf, p=0.5, m=2, max_len=12))
    assert strict.accepted_steps < loose.accepted_steps
    assert loose.stopped_fidelity == 0 and strict.stopped_fidelity > 0


def test_p_one_emits_only_the_users_own_items(model, data):
    cfg = GenerationConfig(tau=math.inf, p=1.0, m=2, max_len=12)
    src, index = source_sequences(data, cfg, 20)
    own = {int(i): set(src.row(j).tolist()) for j, i in enumerate(index)}
    result = run(model, data, cfg)
    assert result
    for row, seq in result.items():
        assert set(seq) <= own[row // cfg.m]
        assert len(set(seq)) == len(seq)  # generated items are masked: no repeats


def test_lengths_are_bounded(model, data):
    cfg = GenerationConfig(tau=math.inf, p=0.0, m=1, max_len=6, min_len=5)
    result = run(model, data, cfg)
    assert result and all(5 <= len(s) <= 6 for s in result.values())


def test_merge_deduplicates_and_appends_synthetic_users(data):
    first = data.training(50)[0].row(0)
    batch_like = [type("B", (), {"row_ids": np.array([5, 1, 3]),
                                 "sequences": [np.array([1, 2, 3]), first.copy(), np.array([1, 2, 3])]})()]
    merged, counts = merge_generated(data, batch_like)
    assert counts == {"generated": 3, "duplicates": 2, "added": 1}
    assert merged.num_synthetic == 1 and merged.sequence(len(merged) - 1).tolist() == [1, 2, 3]
    assert merged.num_real == data.num_real


def test_bad_arguments(model, data):
    with pytest.raises(ValueError, match="shard index"):
        next(batched_generate(model, data, GenerationConfig(), shard=(3, 3)))
    with pytest.raises(ValueError, match="exceeds the model"):
        next(batched_generate(model, data, GenerationConfig(max_len=50)))


def test_catalogue_scoring_helpers_match_torch_semantics():
    scores = torch.tensor([[1.0, 3.0, 3.0, 0.0], [-math.inf, 2.0, 2.0, 5.0]])
    values, items = top_items(scores, 1)
    assert items[:, 0].tolist() == [1, 3] and values[:, 0].tolist() == [3.0, 5.0]  # first index on ties
    rows, best = torch.tensor([0, 0, 1]), torch.tensor([1.0, 3.0, -math.inf])
    assert count_above(scores, rows, best).tolist() == [2, 0, 3]  # strictly above; -inf never counts
    generator = torch.Generator().manual_seed(0)
    for width in (1, 8, 13, 1001):  # the byte mask is padded to whole 64-bit words
        scores = torch.randint(-3, 4, (6, width), generator=generator).float()  # many ties
        rows = torch.tensor([0, 1, 1, 2, 3, 4, 4, 4, 5])  # sorted, naming every row
        best = torch.randint(-4, 5, (9,), generator=generator).float()
        assert torch.equal(count_above(scores, rows, best).long(), (scores[rows] > best[:, None]).sum(1))


@pytest.mark.parametrize("product", PRODUCTS)
def test_catalogue_scorer_gives_the_models_scores(model, product):
    hidden = torch.randn(37, model.config.dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(CatalogueScorer(model, 16, product)(hidden), model.score(hidden))


def test_the_fastest_scorer_is_exact_and_keeps_within_the_block(model):
    hidden = torch.randn(37, model.config.dim, generator=torch.Generator().manual_seed(1))
    scorer = CatalogueScorer.fastest(model, 32)
    assert scorer.product in PRODUCTS and 8 <= scorer.rows <= 32
    with torch.no_grad():
        assert torch.equal(scorer(hidden), model.score(hidden))
    with pytest.raises(ValueError, match="product"):
        CatalogueScorer(model, 16, "fast")
