"""Reading and writing interaction data, with errors that name the file and line.

Formats:

* **sequences** (``.txt``): one user per line, ``user item item ...``, chronological; the format of
  the S3Rec/ICLRec benchmark files. Ids are positive integers; 0 is reserved for padding.
* **interaction logs** (CSV/TSV/Parquet/RecBole): ``rsir.logs``, which returns the same
  ``ParsedSequences``.

Readers stream the file (a line, or a chunk of rows, at a time) into compact int arrays, so that
memory holds the result and one chunk, not the file's text; an upload is read the same way. They only
parse and validate (``rsir.validation``); ``rsir.datasets`` turns the result into an immutable,
versioned dataset.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsir.errors import DataError
from rsir.validation import DEFAULT_MAX_ITEMS, MIN_SEQUENCE_LEN, check_catalogue

MAX_LINE_BYTES = 1 << 20  # 1 MiB: far above any real user (50k ids), far below a memory problem


@dataclass(frozen=True)
class ParsedSequences:
    """Sequences as read from a file: ``users[i]`` owns ``items[offsets[i]:offsets[i + 1]]`` (int64)."""

    users: np.ndarray  # [U] int64, the ids as written in the file (or 1..U after remapping)
    offsets: np.ndarray  # [U+1] int64
    items: np.ndarray  # [T] int64
    num_items: int  # the catalogue is 1..num_items
    user_labels: list[str] | None = None  # original user ids of a remapped log, by position
    item_labels: list[str] | None = None  # original item ids of a remapped log; item j is [j-1]

    @property
    def sequences(self) -> list[np.ndarray]:
        return np.split(self.items, self.offsets[1:-1])


def read_sequences(path: str | Path, num_items: int | None = None,
                   max_items: int = DEFAULT_MAX_ITEMS) -> ParsedSequences:
    """Read the one-user-per-line format.

    ``num_items`` declares the catalogue size; an id above it, or above ``max_items`` when none is
    declared, is an error. Every malformed line raises ``DataError`` with the file and 1-based line
    number; a float such as ``1.9`` is not an id.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path)
    limit = max_items if num_items is None else check_catalogue(num_items, max_items)
    users, lines, lengths, values = array("q"), array("q"), array("q"), array("q")
    with path.open("rb") as f:
        for lineno, raw in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(f"line is longer than {MAX_LINE_BYTES} bytes", path, lineno)
            try:
                fields = raw.decode("ascii").split()
            except UnicodeDecodeError:
                raise DataError("not plain ASCII text (is this a binary file?)", path, lineno) from None
            if not fields:
                continue
            try:
                ids = np.array([int(x) for x in fields], dtype=np.int64)
            except (ValueError, OverflowError):
                bad = next(x for x in fields if not _is_int64(x))
                raise DataError(f"{bad!r} is not an integer id below 2**63", path, lineno) from None
            user, items = int(ids[0]), ids[1:]
            if len(items) < MIN_SEQUENCE_LEN:
                raise DataError(
                    f"user {user} has {len(items)} item(s); leave-one-out needs at least "
                    f"{MIN_SEQUENCE_LEN}", path, lineno)
            low, high = int(items.min()), int(items.max())
            if user < 0:
                raise DataError(f"user id {user} is negative", path, lineno)
            if low < 1:
                raise DataError(f"item id {low} is not positive (0 is padding)", path, lineno)
            if high > limit:
                raise DataError(f"item id {high} is beyond the catalogue of {num_items} items" if num_items else
                                f"item id {high} is above the limit of {max_items} items (the max_items setting)",
                                path, lineno)
            users.append(user)
            lines.append(lineno)
            lengths.append(len(items))
            values.frombytes(items.tobytes())
    if not users:
        raise DataError("the file holds no sequences", path)
    user_ids = np.frombuffer(users, dtype=np.int64)
    _check_unique(user_ids, np.frombuffer(lines, dtype=np.int64), path)
    items = np.frombuffer(values, dtype=np.int64)
    return ParsedSequences(user_ids, offsets_of(np.frombuffer(lengths, dtype=np.int64)), items,
                           num_items or int(items.max()))


def _check_unique(users: np.ndarray, lines: np.ndarray, path: Path) -> None:
    """Name the first line that repeats a user, and the line it first appeared on."""
    order = np.argsort(users, kind="stable")
    ordered = users[order]
    repeats = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1
    if repeats.size:
        later = int(order[repeats].min())
        first = int(order[np.searchsorted(ordered, users[later])])
        raise DataError(f"user {int(users[later])} already appeared on line {int(lines[first])}", path,
                        int(lines[later]))


def offsets_of(lengths: np.ndarray) -> np.ndarray:
    """CSR offsets [n+1] of rows of these lengths."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _is_int64(text: str) -> bool:
    try:
        return -(2**63) <= int(text) < 2**63
    except ValueError:
        return False


def write_sequences(path: str | Path, users: Sequence[int] | np.ndarray, sequences: Sequence[np.ndarray]) -> None:
    """Write the one-user-per-line format (atomically: a reader never sees half a file)."""
    lines = [f"{int(u)} {' '.join(map(str, s.tolist()))}\n" for u, s in zip(users, sequences, strict=True)]
    _atomic_write(Path(path), "".join(lines).encode("ascii"))


def _atomic_write(path: Path, payload: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(payload)
    tmp.replace(path)
