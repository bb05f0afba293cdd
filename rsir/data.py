"""Reading and writing interaction data, with errors that name the file and line.

Formats:

* **sequences** (``.txt``): one user per line, ``user item item ...``, chronological; the format of
  the S3Rec/ICLRec benchmark files. Ids are positive integers; 0 is reserved for padding.
* **interaction logs**: CSV/TSV/Parquet with columns ``user,item[,timestamp]`` (any hashable ids),
  and RecBole ``.inter`` files (``user_id:token  item_id:token  timestamp:float``). Logs are grouped
  into chronological sequences, k-core filtered and remapped to dense ids ``1..N``.

The functions here only parse and validate; ``rsir.datasets`` turns the result into an immutable,
versioned dataset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rsir.errors import DataError

MAX_LINE_BYTES = 1 << 20  # 1 MiB: far above any real user (50k ids), far below a memory problem
MIN_SEQUENCE_LEN = 3  # leave-one-out needs a training item, a validation item and a test item
LOG_SUFFIXES = {".csv": ",", ".tsv": "\t", ".inter": "\t", ".parquet": None}
_COLUMN_ALIASES = {
    "user": ("user", "user_id", "userid", "uid"),
    "item": ("item", "item_id", "itemid", "iid"),
    "timestamp": ("timestamp", "time", "ts"),
}


@dataclass(frozen=True)
class ParsedSequences:
    """Sequences as read from a file: ``users[i]`` owns ``sequences[i]`` (int64 arrays)."""

    users: np.ndarray  # [U] int64, the ids as written in the file (or 1..U after remapping)
    sequences: list[np.ndarray]
    num_items: int  # the largest item id (the catalogue is 1..num_items)
    user_labels: list[str] | None = None  # original user ids of a remapped log, by position
    item_labels: list[str] | None = None  # original item ids of a remapped log; item j is [j-1]


def read_sequences(path: str | Path, num_items: int | None = None) -> ParsedSequences:
    """Read the one-user-per-line format.

    ``num_items`` declares the catalogue size; an id above it is an error. Every malformed line
    raises ``DataError`` with the file and 1-based line number.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("no such file", path)
    users: list[int] = []
    sequences: list[np.ndarray] = []
    first_line: dict[int, int] = {}
    max_item = 0
    with path.open("rb") as f:
        lineno = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            lineno += 1
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
            if user in first_line:
                raise DataError(f"user {user} already appeared on line {first_line[user]}", path, lineno)
            if len(items) < MIN_SEQUENCE_LEN:
                raise DataError(
                    f"user {user} has {len(items)} item(s); leave-one-out needs at least "
                    f"{MIN_SEQUENCE_LEN}", path, lineno)
            low, high = int(items.min()), int(items.max())
            if user < 0:
                raise DataError(f"user id {user} is negative", path, lineno)
            if low < 1:
                raise DataError(f"item id {low} is not positive (0 is padding)", path, lineno)
            if num_items is not None and high > num_items:
                raise DataError(f"item id {high} is beyond the catalogue of {num_items} items", path, lineno)
            first_line[user] = lineno
            users.append(user)
            sequences.append(items)
            max_item = max(max_item, high)
    if not sequences:
        raise DataError("the file holds no sequences", path)
    return ParsedSequences(np.asarray(users, dtype=np.int64), sequences, num_items or max_item)


def _is_int64(text: str) -> bool:
    try:
        return -(2**63) <= int(text) < 2**63
    except ValueError:
        return False


def write_sequences(path: str | Path, users: Sequence[int] | np.ndarray, sequences: Sequence[np.ndarray]) -> None:
    """Write the one-user-per-line format (atomically: a reader never sees half a file)."""
    lines = [f"{int(u)} {' '.join(map(str, s.tolist()))}\n" for u, s in zip(users, sequences, strict=True)]
    _atomic_write(Path(path), "".join(lines).encode("ascii"))


def read_interactions(path: str | Path, k_core: int = 5) -> ParsedSequences:
    """Read a CSV/TSV/Parquet/RecBole log, order each user's items by time and k-core filter.

    Rows of a user with equal timestamps keep their file order. ``k_core`` is applied iteratively
    to users and items until both have at least k interactions (k = 0 or 1 disables it).
    """
    path = Path(path)
    frame = _read_frame(path)
    columns = _resolve_columns(frame, path)
    frame = frame[list(columns.values())].rename(columns={v: k for k, v in columns.items()})
    if frame.empty:
        raise DataError("the file holds no interactions", path)
    for name in ("user", "item"):
        missing = frame[name].isna().to_numpy()
        if missing.any():
            raise DataError(f"empty {name} id", path, _line_of(path, int(np.argmax(missing))))
    frame["user"] = frame["user"].astype(str)
    frame["item"] = frame["item"].astype(str)
    if "timestamp" in frame:
        stamps = pd.to_numeric(frame["timestamp"], errors="coerce")
        bad = stamps.isna().to_numpy()
        if bad.any():
            row = int(np.argmax(bad))
            raise DataError(f"timestamp {frame['timestamp'].iloc[row]!r} is not a number", path, _line_of(path, row))
        frame["timestamp"] = stamps
    else:
        frame["timestamp"] = np.arange(len(frame), dtype=np.float64)
    frame = _k_core(frame, k_core)
    if frame.empty:
        raise DataError(f"no interactions survive {k_core}-core filtering", path)
    frame = frame.sort_values(["user", "timestamp"], kind="stable")
    user_codes, user_labels = pd.factorize(frame["user"], sort=True)
    item_codes, item_labels = pd.factorize(frame["item"], sort=True)
    items = item_codes.astype(np.int64) + 1
    bounds = np.flatnonzero(np.diff(user_codes)) + 1
    sequences = np.split(items, bounds)
    short = [i for i, s in enumerate(sequences) if len(s) < MIN_SEQUENCE_LEN]
    if short:
        raise DataError(
            f"user {user_labels[short[0]]!r} has {len(sequences[short[0]])} interaction(s); leave-one-out "
            f"needs at least {MIN_SEQUENCE_LEN} (raise k_core or drop the user)", path)
    users = np.arange(1, len(sequences) + 1, dtype=np.int64)
    return ParsedSequences(users, sequences, len(item_labels), list(map(str, user_labels)), list(map(str, item_labels)))


def write_interactions(path: str | Path, users: Sequence[int] | np.ndarray, sequences: Sequence[np.ndarray]) -> None:
    """Write a log in the format named by the suffix; the timestamp is the position in the sequence."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in LOG_SUFFIXES:
        raise DataError(f"unknown log format {suffix!r}; use one of {', '.join(LOG_SUFFIXES)}", path)
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    frame = pd.DataFrame({
        "user": np.repeat(np.asarray(users, dtype=np.int64), lengths),
        "item": np.concatenate(sequences) if len(sequences) else np.zeros(0, np.int64),
        "timestamp": np.concatenate([np.arange(n) for n in lengths]) if len(sequences) else np.zeros(0, np.int64),
    })
    tmp = path.with_name(f".{path.name}.tmp")
    sep = LOG_SUFFIXES[suffix]
    if sep is None:  # parquet
        frame.to_parquet(tmp, index=False)
    else:
        if suffix == ".inter":
            frame.columns = ["user_id:token", "item_id:token", "timestamp:float"]
        frame.to_csv(tmp, sep=sep, index=False)
    tmp.replace(path)


def _read_frame(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError("no such file", path)
    suffix = path.suffix.lower()
    if suffix not in LOG_SUFFIXES:
        raise DataError(f"unknown log format {suffix!r}; use one of {', '.join(LOG_SUFFIXES)}", path)
    if path.stat().st_size == 0:
        raise DataError("the file is empty", path)
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path)
        _check_line_lengths(path)
        return pd.read_csv(path, sep=LOG_SUFFIXES[suffix], dtype=str, keep_default_na=False,
                           na_values=[""], engine="c")
    except DataError:
        raise
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text (is this a binary file?)", path) from None
    except Exception as exc:  # pandas/pyarrow raise many kinds; all mean "malformed file"
        raise DataError(f"cannot parse: {str(exc).splitlines()[0]}", path) from None


def _check_line_lengths(path: Path) -> None:
    with path.open("rb") as f:
        for lineno, raw in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), start=1):
            if len(raw) > MAX_LINE_BYTES:
                raise DataError(f"line is longer than {MAX_LINE_BYTES} bytes", path, lineno)


def _resolve_columns(frame: pd.DataFrame, path: Path) -> dict[str, str]:
    """Map canonical names to the file's columns; RecBole ``name:type`` headers are accepted."""
    by_base = {str(c).split(":")[0].strip().lower(): c for c in frame.columns}
    found: dict[str, str] = {}
    for name, aliases in _COLUMN_ALIASES.items():
        match = next((by_base[a] for a in aliases if a in by_base), None)
        if match is not None:
            found[name] = match
        elif name != "timestamp":
            raise DataError(
                f"no {name!r} column (found: {', '.join(map(str, frame.columns))}); expected a header "
                "such as user,item,timestamp", path, 1)
    return found


def _line_of(path: Path, row: int) -> int | None:
    """File line of a data row for text logs (header is line 1); Parquet has no lines."""
    return None if path.suffix.lower() == ".parquet" else row + 2


def _k_core(frame: pd.DataFrame, k: int) -> pd.DataFrame:
    if k <= 1:
        return frame
    while True:
        users = frame["user"].map(frame["user"].value_counts())
        items = frame["item"].map(frame["item"].value_counts())
        keep = (users >= k) & (items >= k)
        if keep.all():
            return frame
        frame = frame[keep]


def _atomic_write(path: Path, payload: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(payload)
    tmp.replace(path)
