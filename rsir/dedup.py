"""Exact de-duplication of sequences in linear time, through 64-bit content hashes.

Merging generated sequences into a dataset drops those equal to one it already holds (a sequence or
its training view, the sequence without its held-out items) or to an earlier generated one. Here every
item is hashed once by numpy, a row's hash is a difference of prefix sums (so a row and its prefixes
cost one pass), and only rows whose hash is shared (a duplicate, or in theory a collision) are compared
byte for byte, so the result is exact.
"""

from __future__ import annotations

import numpy as np

from rsir.datasets import Ragged

_K_ITEM, _K_POS = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD6E8FEB86659FD93)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping), in place."""
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def prefix_hashes(rows: Ragged, drops: list[np.ndarray | int]) -> list[np.ndarray]:
    """For each of ``drops`` (items cut from each row's end: a number, or [N] per row), a 64-bit hash
    of every row so cut [N] uint64: the wrapping sum of a mix of (item, position) over its items,
    mixed with its length. Equal rows hash equal; the items are hashed once for all ``drops``."""
    lengths = rows.lengths
    with np.errstate(over="ignore"):
        parts = np.arange(len(rows.values), dtype=np.uint64)
        parts -= np.repeat(rows.offsets[:-1].astype(np.uint64), lengths)  # position in its row
        parts *= _K_POS
        parts += rows.values.astype(np.uint64) * _K_ITEM
        sums = np.zeros(len(parts) + 1, dtype=np.uint64)
        np.cumsum(_mix(parts), out=sums[1:])
        del parts
        out = []
        for drop in drops:
            kept = np.maximum(lengths - drop, 0)
            out.append(_mix((sums[rows.offsets[:-1] + kept] - sums[rows.offsets[:-1]]) ^ _mix(kept.astype(np.uint64))))
    return out


def _member(values: np.ndarray, ordered: np.ndarray) -> np.ndarray:
    """Whether each of ``values`` is in the sorted array ``ordered`` [n] bool."""
    if not len(ordered):
        return np.zeros(len(values), dtype=bool)
    return ordered[np.minimum(np.searchsorted(ordered, values), len(ordered) - 1)] == values


def first_new(rows: Ragged, drops: list[np.ndarray | int], new: Ragged) -> np.ndarray:
    """Whether each row of ``new`` [n] equals no row of ``rows`` cut by any of ``drops`` (see
    ``prefix_hashes``) and no earlier row of ``new``."""
    each = prefix_hashes(rows, drops)
    mine = prefix_hashes(new, [0])[0]
    order = np.argsort(mine, kind="stable")
    same = mine[order][1:] == mine[order][:-1]
    shared = np.zeros(len(new), dtype=bool)
    shared[order[1:][same]] = shared[order[:-1][same]] = True
    known = np.zeros(len(new), dtype=bool)
    known[order] = _member(mine[order], np.sort(np.concatenate(each)))  # sorted needles: cache-friendly
    suspect = np.flatnonzero(shared | known)
    keep = np.ones(len(new), dtype=bool)
    if not suspect.size:
        return keep
    wanted = np.sort(mine[suspect])
    seen = set()
    for drop, hashes in zip(drops, each, strict=True):
        cut = np.broadcast_to(np.asarray(drop), (len(rows),))
        for i in np.flatnonzero(_member(hashes, wanted)).tolist():
            seen.add(rows.values[rows.offsets[i]:max(rows.offsets[i], rows.offsets[i + 1] - int(cut[i]))].tobytes())
    for i in suspect.tolist():  # ascending: the first of equal rows is kept
        key = new.row(i).tobytes()
        if key in seen:
            keep[i] = False
        else:
            seen.add(key)
    return keep
