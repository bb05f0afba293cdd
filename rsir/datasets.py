"""Immutable, content-addressed sequence datasets and their leave-one-out views.

A ``SequenceDataset`` stores every sequence in one flat array with offsets (CSR), so that a whole
split is a few numpy operations. The first ``num_real`` sequences belong to real users: their last
item is the test target and the one before it the validation target. Sequences after them are
synthetic pseudo-users (RSIR's D'): they only ever train. ``version`` is the sha256 of the content
and is the id under which the services store and reference a dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import BinaryIO

import numpy as np

from rsir.data import ParsedSequences, read_sequences
from rsir.errors import DataError, InvalidDataError
from rsir.logs import LOG_SUFFIXES, read_interactions
from rsir.validation import DEFAULT_MAX_ITEMS, check_catalogue, check_count, check_structure, integer_ids

_FORMAT = "rsir-dataset/1"
_MEMBERS = {"users.npy", "offsets.npy", "items.npy", "meta.npy"}
_MAX_META_BYTES = 1 << 16


def _readonly(values: object, name: str) -> np.ndarray:
    array = np.ascontiguousarray(integer_ids(values, name))
    array.setflags(write=False)
    return array


@dataclass(frozen=True)
class Ragged:
    """A batch of variable-length int sequences: ``values[offsets[i]:offsets[i+1]]`` is row i."""

    offsets: np.ndarray  # [N+1] int64
    values: np.ndarray  # [T] int64

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i]:self.offsets[i + 1]]

    @classmethod
    def from_list(cls, rows: Sequence[np.ndarray]) -> Ragged:
        lengths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        values = integer_ids(np.concatenate(rows), "sequences") if len(rows) else np.zeros(0, np.int64)
        return cls(offsets, values)

    def take(self, index: np.ndarray) -> Ragged:
        """Rows ``index`` [n], in that order."""
        lengths = self.lengths[index]
        offsets = np.zeros(len(index) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return Ragged(offsets, self.values[np.repeat(self.offsets[:-1][index] - offsets[:-1], lengths)
                                           + np.arange(offsets[-1])])

    def tails(self, drop_last: int | np.ndarray, keep: int | np.ndarray) -> Ragged:
        """Each row without its last ``drop_last`` items, cut to its most recent ``keep`` items
        (each a number for all rows or an array [N] per row)."""
        ends = self.offsets[1:] - drop_last
        starts = np.maximum(self.offsets[:-1], ends - keep)
        lengths = np.maximum(ends - starts, 0)
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return Ragged(offsets, self.values[index])

    def to_list(self) -> list[np.ndarray]:
        return [self.row(i) for i in range(len(self))]

    def padded(self, index: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``index`` (default: all) as a right-padded matrix [n, max length] and lengths [n]."""
        index = np.arange(len(self)) if index is None else index
        lengths = self.lengths[index]
        cols = np.arange(max(int(lengths.max(initial=0)), 1))
        valid = cols[None, :] < lengths[:, None]
        return np.where(valid, self.values[np.where(valid, self.offsets[index][:, None] + cols, 0)], 0), lengths


@dataclass(frozen=True)
class EvalSplit:
    """Leave-one-out evaluation inputs for the real users.

    ``inputs`` are the model contexts (the most recent ``max_len`` items before the target),
    ``history`` every item before the target (masked out of the ranking), ``targets`` the held-out
    item of each user.
    """

    inputs: Ragged
    history: Ragged
    targets: np.ndarray  # [U] int64


@dataclass(frozen=True, eq=False)
class SequenceDataset:
    """Sequences of item ids ``1..num_items``; see the module docstring for the layout."""

    num_items: int
    users: np.ndarray  # [S] int64 user ids (synthetic pseudo-users get ids above every real one)
    offsets: np.ndarray  # [S+1] int64
    items: np.ndarray  # [T] int64
    num_real: int
    name: str = ""

    def __post_init__(self) -> None:
        """Refuse any structure but a valid one (``rsir.validation``); no catalogue cap here: entries set it."""
        for field in ("users", "offsets", "items"):
            object.__setattr__(self, field, _readonly(getattr(self, field), field))
        for field in ("num_items", "num_real"):
            object.__setattr__(self, field, check_count(field, getattr(self, field)))
        check_structure(self.num_items, self.users, self.offsets, self.items, self.num_real)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_sequences(cls, sequences: Sequence[np.ndarray], num_items: int | None = None,
                       users: Iterable[int] | None = None, name: str = "",
                       num_real: int | None = None) -> SequenceDataset:
        ragged = Ragged.from_list(list(sequences))
        if num_items is None:
            num_items = int(ragged.values.max(initial=0))
        user_ids = np.arange(1, len(ragged) + 1) if users is None else np.fromiter(users, dtype=np.int64)
        return cls(num_items, user_ids, ragged.offsets, ragged.values,
                   len(ragged) if num_real is None else num_real, name)

    @classmethod
    def from_parsed(cls, parsed: ParsedSequences, name: str = "") -> SequenceDataset:
        """The dataset of a file the readers parsed: every user real, the arrays shared, not copied."""
        return cls(parsed.num_items, parsed.users, parsed.offsets, parsed.items, len(parsed.users), name)

    @classmethod
    def read(cls, path: str | Path, k_core: int = 5, num_items: int | None = None,
             max_items: int = DEFAULT_MAX_ITEMS, name: str | None = None) -> SequenceDataset:
        """A dataset file of any supported format (by its suffix: a log, a stored ``.npz`` version, else
        one user per line), validated, with a catalogue of at most ``max_items``."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".npz":
            dataset = cls.load(path, max_items=max_items)
            return dataset if name is None else dataclasses.replace(dataset, name=name)
        parsed = (read_interactions(path, k_core=k_core, max_items=max_items) if suffix in LOG_SUFFIXES
                  else read_sequences(path, num_items=num_items, max_items=max_items))
        return cls.from_parsed(parsed, path.stem if name is None else name)

    def with_synthetic(self, sequences: Sequence[np.ndarray] | Ragged, name: str | None = None) -> SequenceDataset:
        """D ∪ D': append training-only pseudo-users; the real users and their splits are unchanged."""
        if not len(sequences):
            return self if name is None else SequenceDataset(
                self.num_items, self.users, self.offsets, self.items, self.num_real, name)
        extra = sequences if isinstance(sequences, Ragged) else Ragged.from_list(list(sequences))
        first = int(self.users.max(initial=0)) + 1
        return SequenceDataset(
            self.num_items,
            np.concatenate([self.users, np.arange(first, first + len(extra))]),
            np.concatenate([self.offsets, self.offsets[-1] + extra.offsets[1:]]),
            np.concatenate([self.items, extra.values]),
            self.num_real,
            self.name if name is None else name,
        )

    # -- identity -------------------------------------------------------------------------------
    @cached_property
    def version(self) -> str:
        """sha256 of the content (catalogue size, real-user count, ids); the name is not part of it."""
        h = hashlib.sha256()
        h.update(json.dumps({"format": _FORMAT, "num_items": self.num_items, "num_real": self.num_real}).encode())
        for array in (self.users, self.offsets, self.items):
            h.update(np.ascontiguousarray(array, dtype="<i8").data)  # the buffer itself: no copy of the content
        return h.hexdigest()

    def __len__(self) -> int:
        return len(self.users)

    def __repr__(self) -> str:
        return (f"SequenceDataset(name={self.name!r}, sequences={len(self)}, real={self.num_real}, "
                f"items={self.num_items}, interactions={len(self.items)}, version={self.version[:12]})")

    @property
    def sequences(self) -> Ragged:
        return Ragged(self.offsets, self.items)

    @property
    def num_synthetic(self) -> int:
        return len(self) - self.num_real

    def sequence(self, i: int) -> np.ndarray:
        return self.items[self.offsets[i]:self.offsets[i + 1]]

    # -- leave-one-out views ----------------------------------------------------------------------
    def training(self, max_len: int) -> tuple[Ragged, np.ndarray]:
        """Training sequences (at most ``max_len + 1`` items: ``max_len`` inputs and targets).

        Real users lose their validation and test items; synthetic sequences are used whole.
        Returns the sequences and a bool mask ``[S]`` that marks the synthetic ones.
        """
        synthetic = np.arange(len(self)) >= self.num_real
        return self.sequences.tails(np.where(synthetic, 0, 2), max_len + 1), synthetic

    def evaluation(self, split: str, max_len: int) -> EvalSplit:
        """The validation (second-to-last item) or test (last item) split of the real users."""
        if split not in ("valid", "test"):
            raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
        real = Ragged(self.offsets[: self.num_real + 1], self.items[: self.offsets[self.num_real]])
        held = 1 if split == "test" else 2
        targets = self.items[real.offsets[1:] - held]
        history = real.tails(held, np.iinfo(np.int64).max // 4)
        return EvalSplit(real.tails(held, max_len), history, targets)

    # -- persistence ------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """A lossless, pickle-free ``.npz`` image (the format of stored dataset versions)."""
        buffer = io.BytesIO()
        self._write(buffer)
        return buffer.getvalue()

    def _write(self, target: BinaryIO) -> None:
        meta = json.dumps({"format": _FORMAT, "num_items": self.num_items, "num_real": self.num_real,
                           "name": self.name, "version": self.version})
        np.savez_compressed(target, users=self.users, offsets=self.offsets, items=self.items,
                            meta=np.frombuffer(meta.encode(), dtype=np.uint8))

    @classmethod
    def from_bytes(cls, payload: bytes, expect_version: str | None = None,
                   max_items: int = DEFAULT_MAX_ITEMS) -> SequenceDataset:
        """Inverse of ``to_bytes``; checks the structure, the catalogue cap, the stored and, when given,
        the expected version."""
        return cls._decode(io.BytesIO(payload), expect_version, max_items)

    @classmethod
    def _decode(cls, source: BinaryIO, expect_version: str | None, max_items: int) -> SequenceDataset:
        """Read a stored version from a seekable file; every way it can be broken is an ``InvalidDataError``
        (the catalogue is checked before any array is read), a version mismatch a ``DataError``."""
        if source.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise InvalidDataError("not a stored dataset: a dataset .npz is a zip archive (as `rsir` writes "
                                   "it), and this is not one")
        source.seek(0)
        try:
            with zipfile.ZipFile(source) as archive:
                sizes = {info.filename: info.file_size for info in archive.infolist()}
            if set(sizes) != _MEMBERS:
                raise InvalidDataError(f"not a stored dataset: it holds {sorted(sizes)}, not {sorted(_MEMBERS)}")
            if sizes["meta.npy"] > _MAX_META_BYTES:
                raise InvalidDataError(f"not a stored dataset: its metadata is over {_MAX_META_BYTES} bytes")
            source.seek(0)
            with np.load(source, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
                    found = meta.get("format") if isinstance(meta, dict) else meta
                    raise InvalidDataError(f"unsupported dataset format {found!r} (expected {_FORMAT!r})")
                name = meta.get("name", "")
                if not isinstance(name, str):
                    raise InvalidDataError(f"the dataset name must be a string, got {name!r}")
                num_items = check_catalogue(meta.get("num_items"), max_items)
                dataset = cls(num_items, z["users"], z["offsets"], z["items"],
                              check_count("num_real", meta.get("num_real")), name)
        except DataError:
            raise
        except Exception as exc:  # zipfile, numpy and json raise many kinds; all mean "not a stored dataset"
            raise InvalidDataError(f"not a stored dataset ({type(exc).__name__}: {exc})") from None
        for claimed in (meta.get("version"), expect_version):
            if claimed is not None and claimed != dataset.version:
                raise DataError(f"dataset content hash {dataset.version[:12]} does not match {str(claimed)[:12]}")
        return dataset

    def save(self, path: str | Path) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("wb") as target:  # streamed: no image of the file in memory
            self._write(target)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path, max_items: int = DEFAULT_MAX_ITEMS) -> SequenceDataset:
        """A saved dataset file, read from disk as it is decoded (never whole into memory)."""
        path = Path(path)
        if not path.is_file():
            raise DataError("no such file", path)
        try:
            with path.open("rb") as source:
                return cls._decode(source, None, max_items)
        except DataError as exc:
            raise type(exc)(str(exc), path) from None
