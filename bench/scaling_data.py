"""Seeded synthetic interaction logs shaped like Amazon beauty, at any multiple of its size.

Beauty (the 5-core S3Rec/ICLRec file) has 22,363 users, 12,101 items and 198,502 interactions: every
user and every item has at least 5, lengths and popularities are heavy-tailed (a few users with
hundreds of items, a few items bought thousands of times). ``beauty_like(scale)`` draws a log with
``scale`` times each count and the same shapes: a user's length is 5 plus a Lomax (Pareto II) draw,
an item's count 5 plus a heavier-tailed one (Zipf-like head), and the multiset of item occurrences is
shuffled into the users' slots. Every user and item keeps at least 5 interactions, so a 5-core
filter keeps everything and reading the log back gives exactly the dataset written here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.csv as pacsv  # type: ignore[import-untyped]

from rsir.datasets import SequenceDataset

BEAUTY = {"users": 22_363, "items": 12_101, "interactions": 198_502}
MIN_COUNT = 5  # the 5-core: every user and every item has at least this many interactions
USER_TAIL = 2.5  # Lomax shape of user lengths (median 7, longest a few hundred, as beauty)
ITEM_TAIL = 2.2  # Lomax shape of item counts: a Zipf-like head (most popular ≈ 0.3 % of interactions)


def _counts(n: int, total: int, shape: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` counts of at least ``MIN_COUNT`` summing to ``total``, the excess heavy-tailed [n] int64."""
    extra = rng.pareto(shape, n)
    extra *= (total - MIN_COUNT * n) / extra.sum()
    counts = MIN_COUNT + np.floor(extra).astype(np.int64)
    short = total - int(counts.sum())  # what flooring lost, one each to random rows
    counts[rng.choice(n, short, replace=False)] += 1
    return counts


def beauty_like(scale: float, seed: int = 0) -> tuple[SequenceDataset, np.ndarray]:
    """The dataset and each interaction's timestamp [T] (per user increasing, in seconds)."""
    rng = np.random.default_rng(seed)
    users, items, total = (max(1, round(BEAUTY[k] * scale)) for k in ("users", "items", "interactions"))
    lengths = _counts(users, total, USER_TAIL, rng)
    popularity = _counts(items, total, ITEM_TAIL, rng)
    values = np.repeat(np.arange(1, items + 1, dtype=np.int64), popularity)
    rng.shuffle(values)
    offsets = np.zeros(users + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    start = rng.integers(0, 10**8, users)
    gaps = rng.integers(1, 10**6, total)
    stamps = np.cumsum(gaps)
    stamps -= np.repeat(stamps[offsets[:-1]] - gaps[offsets[:-1]] - start, lengths)
    dataset = SequenceDataset(items, np.arange(1, users + 1), offsets, values, users, f"beauty-like-{scale:g}x")
    return dataset, stamps


def write_log(dataset: SequenceDataset, stamps: np.ndarray, path: Path) -> None:
    """The dataset as a CSV log ``user,item,timestamp`` in global time order (as a service logs it).

    Ids are zero-padded so that their sorted order is their numeric order: the reader's dense
    remapping is then the identity and the log reads back to ``dataset`` exactly."""
    order = np.argsort(stamps, kind="stable")
    user = np.repeat(dataset.users, dataset.sequences.lengths)[order]
    table = pa.table({"user": _padded(user, len(str(len(dataset)))),
                      "item": _padded(dataset.items[order], len(str(dataset.num_items))),
                      "timestamp": pa.array(stamps[order])})
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))


def _padded(ids: np.ndarray, width: int) -> pa.Array:
    """Ids [n] as zero-padded strings of ``width`` digits."""
    return pc.utf8_lpad(pa.array(ids).cast(pa.string()), width, "0")
