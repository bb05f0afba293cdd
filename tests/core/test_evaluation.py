"""Metrics against hand-computed values, masking, and the paired test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from rsir.config import ModelConfig
from rsir.datasets import SequenceDataset
from rsir.evaluation import EvalResult, evaluate, paired_test
from rsir.models.base import DecodeCache, SequentialRecommender


class ItemIdScores(SequentialRecommender):
    """Scores every item by its own id, whatever the context: ranks are easy to compute by hand."""

    def __init__(self, num_items: int):
        super().__init__(ModelConfig(dim=2, heads=1, max_len=8), num_items)
        with torch.no_grad():
            self.item_emb.weight.zero_()
            self.item_emb.weight[:, 0] = torch.arange(num_items + 1, dtype=torch.float)

    def forward(self, items: Tensor) -> Tensor:
        return torch.tensor([1.0, 0.0]).expand(*items.shape, 2)

    def prefill(self, items, lengths, capacity):  # pragma: no cover - not used here
        raise NotImplementedError

    def extend(self, cache: DecodeCache, items):  # pragma: no cover
        raise NotImplementedError


def test_metrics_match_hand_computation():
    result = EvalResult(np.array([0, 1, 5, 25]))
    m = result.metrics()
    assert m["recall@5"] == pytest.approx(2 / 4)
    assert m["recall@10"] == pytest.approx(3 / 4)
    assert m["recall@20"] == pytest.approx(3 / 4)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(7)) / 4)
    assert result.per_user("recall@1").tolist() == [1, 0, 0, 0]
    with pytest.raises(ValueError):
        result.per_user("mrr@10")


def test_full_ranking_with_and_without_history_mask():
    # catalogue 1..10 scored by id: item 10 is first. User 1: history [10, 3, 9], test target 8.
    ds = SequenceDataset.from_sequences([np.array([10, 3, 9, 8]), np.array([1, 2, 4, 5])], num_items=10)
    model = ItemIdScores(10)
    masked = evaluate(model, ds, "test").ranks
    unmasked = evaluate(model, ds, "test", mask_history=False).ranks
    assert unmasked.tolist() == [2, 5]  # 10, 9 above 8; 10..6 above 5
    assert masked.tolist() == [0, 5]  # 10 and 9 are history; user 2's history is below 5
    valid = evaluate(model, ds, "valid").ranks
    assert valid.tolist() == [0, 6]  # target 9: only 10 is above it, and it is history


def test_paired_test():
    rng = np.random.default_rng(0)
    base = EvalResult(rng.integers(0, 40, size=2000))
    better = EvalResult(np.maximum(base.ranks - 8, 0))
    same = paired_test(base, base)
    assert same["p_ttest"] == 1.0 and same["mean_diff"] == 0.0
    result = paired_test(base, better, "recall@10")
    assert result["mean_diff"] > 0 and result["relative"] > 0.5
    assert result["p_ttest"] < 1e-6 and result["p_wilcoxon"] < 1e-6
