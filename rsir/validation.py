"""Structural checks of a dataset, written once and run at every entry.

A dataset enters as a file (the readers of ``rsir.data``, an upload), as arrays (``SequenceDataset``)
or as a stored version a trainer or generator decodes (``SequenceDataset.from_bytes``). Each entry
calls these checks, so that a broken dataset is refused where it enters, with a message naming what
is wrong, instead of being trained on: overlapping or empty rows, ids outside the catalogue, ids
truncated from floats, or a catalogue whose embedding table could never be allocated.
"""

from __future__ import annotations

import numpy as np

from rsir.errors import InvalidDataError

MIN_SEQUENCE_LEN = 3  # leave-one-out needs a training item, a validation item and a test item
MIN_SYNTHETIC_LEN = 2  # a training-only sequence needs an input and a target
# 10^7 items: a 64-dim float32 embedding table of 2.6 GB, far above every benchmark (~10^5) and far
# below a catalogue whose table no machine could hold (10^12 items asked a trainer for 64 TB)
DEFAULT_MAX_ITEMS = 10_000_000
_INT64_MAX = np.iinfo(np.int64).max


def check_catalogue(num_items: object, max_items: int = DEFAULT_MAX_ITEMS) -> int:
    """``num_items`` as an int, when it is a positive integer no larger than ``max_items``."""
    if isinstance(num_items, bool) or not isinstance(num_items, int | np.integer) or num_items < 1:
        raise InvalidDataError(f"num_items must be a positive integer, got {num_items!r}")
    if num_items > max_items:
        raise InvalidDataError(f"a catalogue of {num_items} items is above the limit of {max_items} items "
                               "(the max_items setting)")
    return int(num_items)


def check_count(name: str, value: object) -> int:
    """``value`` as an int when it is an integer (a JSON float or bool is refused, never rounded)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InvalidDataError(f"{name} must be an integer, got {value!r}")
    return int(value)


def integer_ids(values: object, name: str) -> np.ndarray:
    """``values`` as a 1-D int64 array; floats, bools and strings are refused (1.9 is never read as 1)."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise InvalidDataError(f"{name} must be a 1-D array, got shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        raise InvalidDataError(f"{name} must hold integer ids, got {array.dtype} values")
    if array.dtype.kind == "u" and array.size and int(array.max()) > _INT64_MAX:
        raise InvalidDataError(f"{name} holds {int(array.max())}, beyond int64")
    return array.astype(np.int64, copy=False)


def check_structure(num_items: int, users: np.ndarray, offsets: np.ndarray, items: np.ndarray,
                    num_real: int) -> None:
    """Raise ``InvalidDataError`` unless the int64 arrays form a dataset (see ``rsir.datasets``).

    Offsets start at 0, never decrease and end at ``len(items)``; there is at least one real user and
    no more than there are rows; real users have ``MIN_SEQUENCE_LEN`` items, synthetic ones
    ``MIN_SYNTHETIC_LEN``; user ids are unique and not negative, synthetic ones above every real one;
    item ids lie in ``1..num_items``. O(n) numpy, apart from the sort the uniqueness check needs.
    """
    rows = len(users)
    if num_items < 1:
        raise InvalidDataError(f"num_items must be at least 1, got {num_items}")
    if len(offsets) != rows + 1:
        raise InvalidDataError(f"offsets has {len(offsets)} entries for {rows} sequences (needs {rows + 1})")
    if offsets[0] != 0:
        raise InvalidDataError(f"offsets must start at 0, got {int(offsets[0])}")
    lengths = np.diff(offsets)
    if rows and lengths.min() < 0:
        row = int(np.argmax(lengths < 0))
        raise InvalidDataError(f"offsets decrease at sequence {row} ({int(offsets[row])} then "
                               f"{int(offsets[row + 1])}): rows would overlap")
    if offsets[-1] != len(items):
        raise InvalidDataError(f"offsets end at {int(offsets[-1])} but there are {len(items)} items")
    if not 1 <= num_real <= rows:
        raise InvalidDataError(f"num_real={num_real} is outside [1, {rows}]: a dataset needs at least one real "
                               "user and cannot have more real users than sequences")
    _check_lengths(lengths[:num_real], users[:num_real], MIN_SEQUENCE_LEN, "real user", 0)
    _check_lengths(lengths[num_real:], users[num_real:], MIN_SYNTHETIC_LEN, "synthetic sequence", num_real)
    if users.min() < 0:
        raise InvalidDataError(f"user id {int(users.min())} is negative")
    ordered = np.sort(users)
    repeated = ordered[1:] == ordered[:-1]
    if repeated.any():
        raise InvalidDataError(f"user id {int(ordered[1:][repeated][0])} appears more than once")
    if num_real < rows and users[num_real:].min() <= users[:num_real].max():
        raise InvalidDataError("synthetic pseudo-users need ids above every real user's")
    if len(items) and (items.min() < 1 or items.max() > num_items):
        bad = int(items.min()) if items.min() < 1 else int(items.max())
        raise InvalidDataError(f"item id {bad} is outside the catalogue 1..{num_items}")


def _check_lengths(lengths: np.ndarray, users: np.ndarray, minimum: int, what: str, first: int) -> None:
    if len(lengths) and lengths.min() < minimum:
        row = int(np.argmin(lengths))
        raise InvalidDataError(f"{what} {int(users[row])} (sequence {first + row}) has {int(lengths[row])} "
                               f"item(s); it needs at least {minimum}")
