"""Seeded synthetic interaction data with real latent structure.

Items are grouped into clusters laid out on a ring; inside a cluster items follow a preferred
order. A user starts in a cluster, mostly steps to one of the next few items of that order
(so there is a sequential signal, not only popularity) and now and then drifts to a neighbouring
cluster (so long-range context matters). A sequential model trained on it beats popularity by a
wide margin, which lets tests and the demo assert that something was learned.
"""

from __future__ import annotations

import numpy as np

from rsir.datasets import SequenceDataset


def synthetic_dataset(num_users: int = 2000, num_items: int = 400, num_clusters: int = 8,
                      mean_len: float = 10.0, max_len: int = 60, drift: float = 0.15,
                      follow: float = 0.8, seed: int = 0) -> SequenceDataset:
    """Generate ``num_users`` chronological sequences (length ≥ 5, no repeated item per user)."""
    if num_items < 2 * num_clusters or num_clusters < 1:
        raise ValueError("need at least two items per cluster")
    rng = np.random.default_rng(seed)
    order = rng.permutation(num_items) + 1  # cluster c owns order[bounds[c]:bounds[c+1]]
    bounds = np.linspace(0, num_items, num_clusters + 1).astype(int)
    clusters = [order[bounds[c]:bounds[c + 1]] for c in range(num_clusters)]
    lengths = np.minimum(5 + rng.geometric(1.0 / max(mean_len - 4.0, 1.0), size=num_users) - 1, max_len)
    sequences = []
    for length in lengths:
        cluster = int(rng.integers(num_clusters))
        pos = int(rng.integers(len(clusters[cluster])))
        seen: set[int] = set()
        seq: list[int] = []
        while len(seq) < length:
            members = clusters[cluster]
            if rng.random() < drift:
                cluster = (cluster + int(rng.choice((-1, 1)))) % num_clusters
                members = clusters[cluster]
                pos = int(rng.integers(len(members)))
            elif rng.random() < follow:
                pos = (pos + 1 + int(rng.integers(3))) % len(members)
            else:
                pos = int(min(rng.zipf(1.6), len(members)) - 1)
            item = int(members[pos])
            step = 0
            while item in seen and step < len(members):  # walk on to the next unseen item
                pos = (pos + 1) % len(members)
                item = int(members[pos])
                step += 1
            if item in seen:
                break
            seen.add(item)
            seq.append(item)
        sequences.append(np.asarray(seq, dtype=np.int64))
    return SequenceDataset.from_sequences(sequences, num_items=num_items, name=f"synthetic-{seed}")



def sparse_sample(dataset: SequenceDataset, keep: float, min_len: int = 5, seed: int = 0,
                  name: str | None = None) -> SequenceDataset:
    """Observe each interaction of ``dataset`` with probability ``keep`` (order kept), as a log that
    records only part of what users did; users left with fewer than ``min_len`` items are dropped."""
    if not 0 < keep <= 1:
        raise ValueError("keep must be in (0, 1]")
    rng = np.random.default_rng(seed)
    observed = [s[rng.random(len(s)) < keep] for s in (dataset.sequence(i) for i in range(len(dataset)))]
    kept = [np.asarray(s, dtype=np.int64) for s in observed if len(s) >= min_len]
    return SequenceDataset.from_sequences(kept, num_items=dataset.num_items,
                                          name=name or f"{dataset.name}-sparse{keep:g}")



DEMO_KEEP = 0.25  # the share of the latent process's steps the demo's log records


def demo_dataset(seed: int = 0) -> SequenceDataset:
    """The demo's data (``rsir up --demo``, ``make demo``): a sparse sample of the latent process above.

    2,500 users walk 30 steps on average through 600 items in 20 clusters, mostly in order; the log
    records a quarter of the steps (about 1,950 users with 7.4 items each, shorter ones dropped), so it
    holds far fewer transitions than a model of the process could use. ``configs/recipes/demo.toml``
    says what RSIR was measured to do on it.
    """
    walks = synthetic_dataset(num_users=2500, num_items=600, num_clusters=20, mean_len=30.0, max_len=60,
                              drift=0.05, follow=0.95, seed=seed)
    return sparse_sample(walks, DEMO_KEEP, min_len=3, seed=seed + 1, name="demo")
