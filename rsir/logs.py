"""Interaction logs: CSV/TSV/Parquet with columns ``user,item[,timestamp]`` (any hashable ids) and
RecBole ``.inter`` files (``user_id:token  item_id:token  timestamp:float``).

A log is grouped into chronological sequences, k-core filtered and remapped to dense ids ``1..N``
(in sorted order of the ids as written). It is read ``CHUNK_ROWS`` rows at a time: ids become int32
codes as they arrive, each distinct label is held once, and the rows' text is never in memory whole,
so that a big upload costs a small multiple of its rows' codes rather than of its text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq  # type: ignore[import-untyped]  # no stubs; pandas needs it for parquet anyway

from rsir.data import MAX_LINE_BYTES, ParsedSequences, offsets_of
from rsir.errors import DataError
from rsir.validation import DEFAULT_MAX_ITEMS, MIN_SEQUENCE_LEN

CHUNK_ROWS = 1 << 18  # log rows parsed at once: ~10 MB of text, a few MB of codes
LOG_SUFFIXES = {".csv": ",", ".tsv": "\t", ".inter": "\t", ".parquet": None}
_MAX_CODE = np.iinfo(np.int32).max  # distinct ids a log may hold (codes are int32)
_COLUMN_ALIASES = {
    "user": ("user", "user_id", "userid", "uid"),
    "item": ("item", "item_id", "itemid", "iid"),
    "timestamp": ("timestamp", "time", "ts"),
}


def read_interactions(path: str | Path, k_core: int = 5, max_items: int = DEFAULT_MAX_ITEMS) -> ParsedSequences:
    """Read a CSV/TSV/Parquet/RecBole log, order each user's items by time and k-core filter.

    Rows of a user with equal timestamps keep their file order. ``k_core`` is applied iteratively
    to users and items until both have at least k interactions (k = 0 or 1 disables it). The file
    is read ``CHUNK_ROWS`` rows at a time; ids become int32 codes as they arrive.
    """
    path = Path(path)
    user_ids, item_ids = _Labels(path), _Labels(path)
    codes: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    row = 0
    for frame in _frames(path):
        for name in ("user", "item"):
            missing = frame[name].isna().to_numpy()
            if missing.any():
                raise DataError(f"empty {name} id", path, _line_of(path, row + int(np.argmax(missing))))
        if "timestamp" in frame:
            stamps = pd.to_numeric(frame["timestamp"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad = np.isnan(stamps)
            if bad.any():
                at = int(np.argmax(bad))
                raise DataError(f"timestamp {frame['timestamp'].iloc[at]!r} is not a number", path,
                                _line_of(path, row + at))
        else:
            stamps = np.arange(row, row + len(frame), dtype=np.float64)
        for into, values in zip(codes, (user_ids.encode(frame["user"]), item_ids.encode(frame["item"]), stamps),
                                strict=True):
            into.append(values)
        row += len(frame)
    if row == 0:
        raise DataError("the file holds no interactions", path)
    user, item, stamp = (_drain(parts) for parts in codes)
    (user, users_seen), (item, items_seen) = user_ids.resolve(user), item_ids.resolve(item)
    keep = _k_core(user, item, k_core)
    if not keep.any():
        raise DataError(f"no interactions survive {k_core}-core filtering", path)
    if not keep.all():
        user, item, stamp = user[keep], item[keep], stamp[keep]
    user, user_labels = _dense(user, users_seen)
    item, item_labels = _dense(item, items_seen)
    if len(item_labels) > max_items:
        raise DataError(f"{len(item_labels)} distinct items are above the limit of {max_items} items "
                        "(the max_items setting)", path)
    order = np.lexsort((stamp, user))  # stable: equal timestamps keep their file order
    del stamp  # a third of the rows' memory, not needed past the sort
    lengths = np.bincount(user, minlength=len(user_labels))
    if lengths.min() < MIN_SEQUENCE_LEN:
        short = int(np.argmin(lengths))
        raise DataError(
            f"user {user_labels[short]!r} has {int(lengths[short])} interaction(s); leave-one-out "
            f"needs at least {MIN_SEQUENCE_LEN} (raise k_core or drop the user)", path)
    users = np.arange(1, len(user_labels) + 1, dtype=np.int64)
    items = item[order].astype(np.int64)
    items += 1
    return ParsedSequences(users, offsets_of(lengths), items, len(item_labels), user_labels, item_labels)


class _Labels:
    """Ids as written (strings) → int32 codes in first-seen order, a chunk at a time, holding each
    distinct label once; ``resolve`` turns them into codes in sorted label order (which dense ids follow).

    The labels seen so far live in one dict that grows in place, so a chunk costs a lookup per distinct
    label in it. (A pandas ``Index`` appended to per chunk rebuilt its hash table over every label seen
    on each chunk, chunks × labels: 217 CPU s for a 20M-row log against 105 s now, bench/scaling.py.)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.codes: dict[str, int] = {}

    def encode(self, column: pd.Series) -> np.ndarray:
        local, uniques = pd.factorize(column.astype(str))
        table = self.codes
        codes = np.fromiter((table.setdefault(label, len(table)) for label in uniques.tolist()), dtype=np.int32,
                            count=len(uniques))  # a list: iterating Arrow-backed strings is 4× slower
        if len(table) > _MAX_CODE:
            raise DataError(f"more than {_MAX_CODE} distinct ids in one column", self.path)
        return codes[local]

    def resolve(self, codes: np.ndarray) -> tuple[np.ndarray, pd.Index]:
        """The codes as codes of the sorted distinct labels, and those labels."""
        labels = pd.Index(list(self.codes), dtype=str)
        self.codes = {}
        order = labels.argsort()
        rank = np.empty(len(order), dtype=np.int32)
        rank[order] = np.arange(len(order), dtype=np.int32)
        return np.take(rank, codes), labels[order]


def _drain(parts: list[np.ndarray]) -> np.ndarray:
    """The chunks as one array; the list is emptied, so that they are not held twice."""
    whole = np.concatenate(parts)
    parts.clear()
    return whole


def _dense(codes: np.ndarray, labels: pd.Index) -> tuple[np.ndarray, list[str]]:
    """Renumber the codes that occur to ``0..n-1`` (keeping their order); their labels."""
    present = np.bincount(codes, minlength=len(labels)) > 0
    return np.take((np.cumsum(present) - 1).astype(np.int32), codes), [str(x) for x in labels[present]]


def _k_core(user: np.ndarray, item: np.ndarray, k: int) -> np.ndarray:
    """The rows that survive iterated k-core filtering (users and items with at least k rows)."""
    keep = np.ones(len(user), dtype=bool)
    if k <= 1:
        return keep
    while True:
        per_user = np.bincount(user[keep], minlength=int(user.max()) + 1).astype(np.int32)
        per_item = np.bincount(item[keep], minlength=int(item.max()) + 1).astype(np.int32)
        kept = keep & (np.take(per_user, user) >= k) & (np.take(per_item, item) >= k)
        if np.array_equal(kept, keep):
            return keep
        keep = kept


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


def _frames(path: Path) -> Iterator[pd.DataFrame]:
    """The log's rows, ``CHUNK_ROWS`` at a time, with the canonical columns user, item[, timestamp]."""
    if not path.is_file():
        raise DataError("no such file", path)
    suffix = path.suffix.lower()
    if suffix not in LOG_SUFFIXES:
        raise DataError(f"unknown log format {suffix!r}; use one of {', '.join(LOG_SUFFIXES)}", path)
    if path.stat().st_size == 0:
        raise DataError("the file is empty", path)
    try:
        if suffix == ".parquet":
            parquet = pq.ParquetFile(path)
            columns = _resolve_columns(parquet.schema_arrow.names, path)
            chunks: Iterator[pd.DataFrame] = (batch.to_pandas() for batch in parquet.iter_batches(
                CHUNK_ROWS, columns=list(columns.values())))
        else:
            _check_line_lengths(path)
            sep = LOG_SUFFIXES[suffix]
            columns = _resolve_columns(list(pd.read_csv(path, sep=sep, nrows=0).columns), path)
            chunks = pd.read_csv(path, sep=sep, usecols=list(columns.values()), chunksize=CHUNK_ROWS, dtype=str,
                                 keep_default_na=False, na_values=[""], engine="c")
        for frame in chunks:
            yield frame.rename(columns={v: k for k, v in columns.items()})
    except DataError:
        raise
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text (is this a binary file?)", path) from None
    except Exception as exc:  # pandas/pyarrow raise many kinds; all mean "malformed file"
        raise DataError(f"cannot parse: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                        path) from None


def _check_line_lengths(path: Path) -> None:
    """Refuse a line over ``MAX_LINE_BYTES`` (its newline included), scanning 4 MB blocks with numpy."""
    with path.open("rb") as f:
        line, run = 1, 0  # the line being read, and its bytes before this block
        while block := f.read(1 << 22):
            ends = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == ord("\n"))
            lengths = np.diff(ends, prepend=-1)
            if len(lengths):
                lengths[0] += run
            run = (run if not len(ends) else 0) + len(block) - 1 - int(ends[-1] if len(ends) else -1)
            over = np.flatnonzero(lengths > MAX_LINE_BYTES)
            if over.size or run > MAX_LINE_BYTES:
                raise DataError(f"line is longer than {MAX_LINE_BYTES} bytes", path,
                                line + int(over[0] if over.size else len(ends)))
            line += len(ends)


def _resolve_columns(names: list[str], path: Path) -> dict[str, str]:
    """Map canonical names to the file's columns; RecBole ``name:type`` headers are accepted."""
    by_base = {str(c).split(":")[0].strip().lower(): c for c in names}
    found: dict[str, str] = {}
    for name, aliases in _COLUMN_ALIASES.items():
        match = next((by_base[a] for a in aliases if a in by_base), None)
        if match is not None:
            found[name] = match
        elif name != "timestamp":
            raise DataError(
                f"no {name!r} column (found: {', '.join(map(str, names))}); expected a header "
                "such as user,item,timestamp", path, 1)
    return found


def _line_of(path: Path, row: int) -> int | None:
    """File line of a data row for text logs (header is line 1); Parquet has no lines."""
    return None if path.suffix.lower() == ".parquet" else row + 2
