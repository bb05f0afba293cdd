"""Data analyses per dataset version: size, density and Approximate Entropy (paper App. E).

Density and sparsity follow the paper's Table 3: interactions / (users × items), counted over the
training view. ``train_view`` reproduces the paper's reported statistics exactly (see
PROVENANCE.md): the most recent ``max_len`` items of each user, minus the two held-out items.
"""

from __future__ import annotations

import math

import numpy as np

from rsir.datasets import Ragged, SequenceDataset


def _phi(rows: Ragged, width: int) -> np.ndarray:
    """Φ(width) of every row, all at once: the mean over a row's windows of the log share of that
    row's windows equal to it (r = 0: similar means identical). Rows need ≥ width items. [S]"""
    lengths = rows.lengths
    windows = lengths - width + 1  # [S]
    seq = np.repeat(np.arange(len(lengths)), windows)  # [W] the row of each window
    first = np.cumsum(windows) - windows
    start = rows.offsets[:-1][seq] + np.arange(len(seq)) - first[seq]  # [W] window starts
    items = rows.values.astype(np.int64)
    base = int(items.max(initial=0)) + 1
    key = items[start]
    for offset in range(1, width):  # fold a window into one int64 id, a column at a time: dense id × base + item
        key = np.unique(key, return_inverse=True)[1].reshape(-1) * base + items[start + offset]
    window = np.unique(key, return_inverse=True)[1].reshape(-1)
    _, inverse, counts = np.unique(seq * (int(window.max(initial=0)) + 1) + window, return_inverse=True,
                                   return_counts=True)
    counts = counts[inverse.reshape(-1)]  # [W] how many windows of its row equal each window
    return np.bincount(seq, weights=np.log(counts), minlength=len(lengths)) / windows - np.log(windows)


def approximate_entropies(rows: Ragged, m: int = 2, block_items: int = 1 << 19) -> np.ndarray:
    """ApEn(m, r=0) of every row (Pincus 1991, with exact matching as in App. E); NaN where a row is
    shorter than m + 2 (no (m+1)-windows to compare). Vectorised over rows, in blocks of about
    ``block_items`` items so that its int64 window arrays stay near 40 MB whatever the data's size
    (an upload is described as it is registered, under a memory bound). [S]"""
    out = np.full(len(rows), np.nan)
    index = np.flatnonzero(rows.lengths >= m + 2)
    if len(index):
        ends = np.cumsum(rows.lengths[index])
        for part in np.split(index, np.searchsorted(ends, np.arange(block_items, ends[-1], block_items))):
            if len(part):
                block = rows.take(part)
                out[part] = _phi(block, m) - _phi(block, m + 1)
    return out


def approximate_entropy(sequence: np.ndarray, m: int = 2) -> float | None:
    """ApEn(m, r=0) of one item sequence; None when it is shorter than m + 2."""
    value = approximate_entropies(Ragged.from_list([np.asarray(sequence)]), m)[0]
    return None if np.isnan(value) else float(value)


def mean_approximate_entropy(dataset: SequenceDataset, m: int = 2) -> float:
    """Mean ApEn over the dataset's sequences that are long enough."""
    values = approximate_entropies(dataset.sequences, m)
    return float(np.nanmean(values)) if not np.isnan(values).all() else float("nan")


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
