"""Full-ranking leave-one-out evaluation and paired significance tests.

Every user's held-out item is ranked against the whole catalogue (no sampled candidates). The
user's earlier items are masked out of the ranking by default, as the RSIR authors do; it is a
switch. Only the 0-based rank of each target is kept: it gives NDCG@K and Recall@K for any K,
per user, which is what a paired test between two models needs.

In a data-parallel job (``rsir.distributed``) the users are sharded over the ranks: each scores
every N-th batch of users against the catalogue and the per-user ranks are summed over ranks (each
user is ranked by exactly one), so no process scores every user and every rank ends with the same
ranks, hence the same metrics and early-stopping decisions, without a broadcast. A batch holds
the same users as in one process, so the ranks are the one-process ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from rsir.datasets import EvalSplit, SequenceDataset
from rsir.distributed import World
from rsir.models import SequentialRecommender
from rsir.resources import keep_freed_memory
from rsir.scoring import CatalogueScorer, count_above, rank_block

KS = (5, 10, 20)
METRICS = tuple(f"{name}@{k}" for name in ("ndcg", "recall") for k in KS)


@dataclass(frozen=True)
class EvalResult:
    """0-based ranks [U] of each user's target (0 = ranked first)."""

    ranks: np.ndarray

    def per_user(self, metric: str) -> np.ndarray:
        """Per-user values [U] of ``ndcg@K`` or ``recall@K``."""
        name, _, k = metric.partition("@")
        if name not in ("ndcg", "recall") or not k.isdigit() or int(k) < 1:
            raise ValueError(f"unknown metric {metric!r}; use ndcg@K or recall@K")
        hit = self.ranks < int(k)
        if name == "recall":
            return hit.astype(np.float64)
        return np.where(hit, 1.0 / np.log2(self.ranks + 2.0), 0.0)

    def metrics(self, names: tuple[str, ...] = METRICS) -> dict[str, float]:
        return {m: float(self.per_user(m).mean()) for m in names}


@torch.no_grad()
def rank_targets(model: SequentialRecommender, split: EvalSplit, mask_history: bool = True,
                 batch_size: int = 1024, device: torch.device | str = "cpu",
                 world: World | None = None) -> np.ndarray:
    """0-based rank [U] of every target among all items (history masked when asked).

    Users are processed in order of context length so that a batch carries almost no padding, and
    in blocks of at most ``batch_size`` whose scores stay within ``rsir.scoring.rank_block``'s cap.
    With ``world``, this rank scores its share of the batches and all ranks get every rank.
    """
    keep_freed_memory()
    batch_size = rank_block(model.num_items, batch_size)
    was_training = model.training
    model.eval()
    order = np.argsort(split.inputs.lengths, kind="stable")
    rank, size = (0, 1) if world is None else (world.rank, world.size)
    ranks = (np.empty if world is None else np.zeros)(len(order), dtype=np.int64)
    score = CatalogueScorer(model, batch_size)
    for start in range(rank * batch_size, len(order), size * batch_size):
        index = order[start:start + batch_size]
        items, lengths = split.inputs.padded(index)
        items_t = torch.from_numpy(items).to(device)
        lengths_t = torch.from_numpy(lengths).to(device)
        scores = score(model.last_hidden(items_t, lengths_t))  # [b, V+1]
        rows = torch.arange(len(index), device=device)
        targets = torch.from_numpy(split.targets[index]).to(device)
        target_scores = scores[rows, targets]
        if mask_history:
            hist, _ = split.history.padded(index)
            hist_t = torch.from_numpy(hist).to(device)
            scores.scatter_(1, hist_t, float("-inf"))  # padding id 0 is -inf already
        ranks[index] = count_above(scores, rows, target_scores).cpu().numpy()
    model.train(was_training)
    return ranks if world is None else world.sum(ranks)


def sample_users(split: EvalSplit, most: int, seed: int) -> EvalSplit:
    """At most ``most`` users of ``split`` (all when ``most`` is 0), a seeded sample in user order:
    validation during training ranks the same users every epoch, at a cost that ``most`` bounds."""
    if most == 0 or len(split.targets) <= most:
        return split
    index = np.sort(np.random.default_rng(seed).choice(len(split.targets), most, replace=False))
    return EvalSplit(split.inputs.take(index), split.history.take(index), split.targets[index])


def evaluate(model: SequentialRecommender, dataset: SequenceDataset, split: str = "test",
             mask_history: bool = True, batch_size: int = 1024,
             device: torch.device | str = "cpu", world: World | None = None) -> EvalResult:
    """Rank every real user's validation or test item; see the module docstring."""
    view = dataset.evaluation(split, model.config.max_len)
    return EvalResult(rank_targets(model, view, mask_history, batch_size, device, world))


def paired_test(base: EvalResult, other: EvalResult, metric: str = "recall@10") -> dict[str, float]:
    """Paired comparison of two result sets on the same users.

    Returns the mean difference (other − base), its relative change, and two-sided p-values of a
    paired t-test and of the Wilcoxon signed-rank test.
    """
    if base.ranks.shape != other.ranks.shape:
        raise ValueError("paired test needs results on the same users")
    a, b = base.per_user(metric), other.per_user(metric)
    diff = b - a
    mean_a = float(a.mean())
    if not diff.any():
        return {"mean_diff": 0.0, "relative": 0.0, "p_ttest": 1.0, "p_wilcoxon": 1.0}
    return {
        "mean_diff": float(diff.mean()),
        "relative": float(diff.mean() / mean_a) if mean_a else float("inf"),
        "p_ttest": float(stats.ttest_rel(b, a).pvalue),
        "p_wilcoxon": float(stats.wilcoxon(b, a, zero_method="wilcox").pvalue),
    }
