"""Data analyses per dataset version: size, density and Approximate Entropy (paper App. E).

Density and sparsity follow the paper's Table 3: interactions / (users × items), counted over the
training view. ``train_view`` reproduces the paper's reported statistics exactly (see
PROVENANCE.md): the most recent ``max_len`` items of each user, minus the two held-out items.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from rsir.datasets import SequenceDataset


def approximate_entropy(sequence: np.ndarray, m: int = 2) -> float | None:
    """ApEn(m, r=0) of one item sequence (Pincus 1991, with exact matching as in App. E).

    With r = 0 two windows are similar only if identical. None when the sequence is shorter than
    m + 2 (no (m+1)-windows to compare).
    """
    n = len(sequence)
    if n < m + 2:
        return None
    values = sequence.tolist()

    def phi(width: int) -> float:
        windows = [tuple(values[k:k + width]) for k in range(n - width + 1)]
        counts = Counter(windows)
        total = len(windows)
        return sum(math.log(counts[w] / total) for w in windows) / total

    return phi(m) - phi(m + 1)


def mean_approximate_entropy(dataset: SequenceDataset, m: int = 2) -> float:
    """Mean ApEn over the dataset's sequences that are long enough."""
    values = [v for v in (approximate_entropy(dataset.sequence(i), m) for i in range(len(dataset))) if v is not None]
    return float(np.mean(values)) if values else float("nan")


def train_view(dataset: SequenceDataset, max_len: int = 50) -> dict[str, float]:
    """Users, items, training interactions and average length of the paper's training view."""
    lengths = dataset.sequences.lengths
    real = np.arange(len(dataset)) < dataset.num_real
    # real users: the latest max_len items without the 2 held out; synthetic: the latest max_len
    kept = np.where(real, np.minimum(lengths, max_len) - 2, np.minimum(lengths, max_len))
    view = dataset.sequences.tails(np.where(real, 2, 0), np.where(real, max_len - 2, max_len)).values
    items = len(np.unique(view))
    interactions = int((kept - 1).clip(min=0).sum())
    users = len(dataset)
    return {"sequences": users, "items": items, "interactions": interactions,
            "avg_length": interactions / users if users else 0.0,
            "sparsity": 1 - interactions / (users * items) if users and items else 1.0}


def describe(dataset: SequenceDataset, max_len: int = 50) -> dict[str, object]:
    """A summary of one dataset version, as shown by ``rsir data stats`` and the dashboard."""
    lengths = dataset.sequences.lengths
    density = len(dataset.items) / (dataset.num_real * dataset.num_items) if dataset.num_real else 0.0
    apen = mean_approximate_entropy(dataset)
    return {
        "name": dataset.name,
        "version": dataset.version,
        "users": dataset.num_real,
        "synthetic_sequences": dataset.num_synthetic,
        "items": dataset.num_items,
        "interactions": len(dataset.items),
        "avg_length": float(lengths.mean()) if len(lengths) else 0.0,
        "density": density,
        "apen": apen,
        "apen_reciprocal": 1.0 / apen if apen and not math.isnan(apen) else float("nan"),
        "train_view": train_view(dataset, max_len),
    }
