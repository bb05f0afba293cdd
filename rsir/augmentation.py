"""Heuristic augmentation baselines (paper §5.1.2), sized to match RSIR for a fair comparison.

* **Reordering** (Zhou et al., 2024): shuffle a random sub-span of a user's sequence.
* **Insertion** (Liu et al., 2021, CoSeRec): insert items next to positions of the sequence; each
  inserted item is the one that most often follows the item it is placed after in the training
  data (a co-occurrence stand-in for CoSeRec's item-similarity model), a random item if none.

Both draw their source sequences uniformly from the real users' training views and add exactly
``count`` new synthetic sequences. :func:`stack_insertion` puts Insertion's sequences beside RSIR's
(``TrainConfig.insertion_ratio``): on a strong base the two kinds of synthetic data add up.
"""

from __future__ import annotations

import numpy as np

from rsir.datasets import SequenceDataset
from rsir.errors import ConfigError

METHODS = ("reorder", "insertion")


def most_frequent_successors(dataset: SequenceDataset, max_len: int) -> np.ndarray:
    """Most frequent next item of every item in the training views ([V+1], 0 = none seen)."""
    train, _ = dataset.training(max_len)
    values, width = train.values, dataset.num_items + 1
    is_last = np.zeros(len(values), dtype=bool)
    is_last[train.offsets[1:][train.lengths > 0] - 1] = True
    follow = np.flatnonzero(~is_last)
    pairs, counts = np.unique(values[follow] * width + values[follow + 1], return_counts=True)
    prev, nxt = pairs // width, pairs % width
    order = np.lexsort((-counts, prev))  # by item, most frequent successor first
    first = np.ones(len(order), dtype=bool)
    first[1:] = prev[order][1:] != prev[order][:-1]
    best = np.zeros(width, dtype=np.int64)
    best[prev[order][first]] = nxt[order][first]
    return best


def augment(dataset: SequenceDataset, method: str, count: int, seed: int = 0, max_len: int = 50,
            ratio: float = 0.3) -> SequenceDataset:
    """Return ``dataset`` plus ``count`` sequences made by ``method`` (``reorder``/``insertion``).

    ``ratio`` is the share of a sequence reordered (reorder) or the number of inserted items per
    item (insertion), at least one.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown augmentation {method!r}; choose from {', '.join(METHODS)}")
    if count < 0:
        raise ConfigError("count must be >= 0")
    rng = np.random.default_rng(seed)
    train, synthetic = dataset.training(max_len)
    candidates = np.flatnonzero(~synthetic & (train.lengths >= 2))
    successors = most_frequent_successors(dataset, max_len) if method == "insertion" else None
    new = []
    for source in rng.choice(candidates, size=count, replace=True) if count else []:
        seq = train.row(source).copy()
        n = len(seq)
        if method == "reorder":
            span = max(2, round(ratio * n))
            start = int(rng.integers(0, n - span + 1))
            seq[start:start + span] = rng.permutation(seq[start:start + span])
        else:
            assert successors is not None  # computed above for insertion
            for _ in range(max(1, round(ratio * n))):
                at = int(rng.integers(0, len(seq)))
                item = int(successors[seq[at]]) or int(rng.integers(1, dataset.num_items + 1))
                seq = np.insert(seq, at + 1, item)
            seq = seq[-max_len:]
        new.append(seq)
    return dataset.with_synthetic(new)


def stack_insertion(dataset: SequenceDataset, ratio: float, seed: int = 0, max_len: int = 50) -> SequenceDataset:
    """D ∪ I ∪ D': the real users, then ``round(ratio × |D'|)`` Insertion sequences made from them
    alone, then ``dataset``'s own synthetic sequences D' (all of which train at the synthetic weight)."""
    if ratio < 0:
        raise ConfigError("ratio must be >= 0")
    count = round(ratio * dataset.num_synthetic)
    if not count:
        return dataset
    end = int(dataset.offsets[dataset.num_real])
    real = SequenceDataset(dataset.num_items, dataset.users[:dataset.num_real], dataset.offsets[:dataset.num_real + 1],
                           dataset.items[:end], dataset.num_real, dataset.name)
    synthetic = [dataset.sequence(i) for i in range(dataset.num_real, len(dataset))]
    stacked = augment(real, "insertion", count, seed=seed, max_len=max_len)
    return stacked.with_synthetic(synthetic, name=f"{dataset.name}+insertion")
