"""Datasets and checkpoints in object storage: references, publishing, checked loading, caching.

A dataset is stored as ``SequenceDataset.to_bytes()`` under ``datasets/<version>.npz`` and referenced
by (URI, version); loading checks both the blob's sha256 (storage) and the content hash (core). A
checkpoint is referenced by (URI, sha256).
"""

from __future__ import annotations

import io
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import torch

from rsir.checkpoint import CheckpointInfo, load_checkpoint
from rsir.datasets import SequenceDataset
from rsir.errors import ConfigError, DataError
from rsir.models import SequentialRecommender
from rsir.validation import DEFAULT_MAX_ITEMS
from services.common.storage import BlobNotFound, IntegrityError, ObjectStore

HEX64 = re.compile(r"[0-9a-f]{64}")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class DatasetRef:
    uri: str
    version: str  # sha256 of the dataset content (SequenceDataset.version)

    def validate(self, field: str = "dataset") -> DatasetRef:
        if not self.uri:
            raise ConfigError(f"{field}.uri: required (file:///... or s3://bucket/key)")
        if not HEX64.fullmatch(self.version):
            raise ConfigError(f"{field}.version: must be the dataset's sha256 content hash (64 lowercase hex "
                              f"digits), got {self.version!r}")
        return self


@dataclass(frozen=True)
class BlobRef:
    uri: str
    sha256: str = ""  # empty in a request: accept whatever the storage recorded

    def validate(self, field: str) -> BlobRef:
        if not self.uri:
            raise ConfigError(f"{field}.uri: required (file:///... or s3://bucket/key)")
        if self.sha256 and not HEX64.fullmatch(self.sha256):
            raise ConfigError(f"{field}.sha256: must be empty or 64 lowercase hex digits, got {self.sha256!r}")
        return self


def publish_dataset(store: ObjectStore, dataset: SequenceDataset, key: str | None = None) -> DatasetRef:
    """Store ``dataset`` (by default under its content address) and return its reference."""
    info = store.put(key or f"datasets/{dataset.version}.npz", dataset.to_bytes())
    return DatasetRef(info.uri, dataset.version)


def fetch_dataset(store: ObjectStore, ref: DatasetRef, max_items: int = DEFAULT_MAX_ITEMS) -> SequenceDataset:
    """Load and verify a stored dataset version: its structure, a catalogue of at most ``max_items``
    (a broken one raises ``InvalidDataError``) and its content hash."""
    payload = store.get_uri(ref.uri)
    try:
        return SequenceDataset.from_bytes(payload, expect_version=ref.version, max_items=max_items)
    except DataError as exc:
        raise type(exc)(f"{ref.uri}: {exc}; publish the dataset again or reference the version it holds") from None


class LruCache(Generic[K, V]):
    """A small thread-safe LRU map that loads missing values once (loads are serialised)."""

    def __init__(self, capacity: int):
        self.capacity = max(1, capacity)
        self.hits = self.misses = 0
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()

    def _lookup(self, key: K) -> tuple[bool, V | None]:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return True, self._items[key]
        return False, None

    def get(self, key: K, load: Callable[[], V]) -> V:
        found, value = self._lookup(key)
        if not found:
            with self._load_lock:  # two shards asking for one checkpoint load it once
                found, value = self._lookup(key)
                if not found:
                    value = load()
                    with self._lock:
                        self._items[key] = value
                        while len(self._items) > self.capacity:
                            self._items.popitem(last=False)
        with self._lock:
            self.hits += found
            self.misses += not found
        return value  # type: ignore[return-value]

    def __len__(self) -> int:
        return len(self._items)


class CheckpointCache:
    """Loaded models by (URI, sha256), on one device."""

    def __init__(self, store: ObjectStore, device: torch.device, capacity: int):
        self.store, self.device = store, device
        self.cache: LruCache[tuple[str, str], tuple[SequentialRecommender, CheckpointInfo]] = LruCache(capacity)

    def get(self, ref: BlobRef) -> tuple[SequentialRecommender, CheckpointInfo]:
        key = self.store.key(ref.uri)
        head = self.store.head(key)
        if head is None:
            raise BlobNotFound(f"{ref.uri}: no checkpoint there; was the training job published to this storage?")
        if ref.sha256 and ref.sha256 != head.sha256:
            raise IntegrityError(f"{ref.uri}: stored checkpoint has sha256 {head.sha256[:12]}, the request expects "
                                 f"{ref.sha256[:12]}; it was replaced since the reference was taken")
        return self.cache.get((ref.uri, head.sha256),
                              lambda: load_checkpoint(self.store.get(key, head.sha256), self.device))


class DatasetCache:
    """Loaded datasets by (URI, version)."""

    def __init__(self, store: ObjectStore, capacity: int, max_items: int = DEFAULT_MAX_ITEMS):
        self.store, self.max_items = store, max_items
        self.cache: LruCache[tuple[str, str], SequenceDataset] = LruCache(capacity)

    def get(self, ref: DatasetRef) -> SequenceDataset:
        return self.cache.get((ref.uri, ref.version), lambda: fetch_dataset(self.store, ref, self.max_items))


def ranks_bytes(ranks: np.ndarray) -> bytes:
    """Per-user 0-based test ranks [U] as an int32 ``.npy`` blob (no pickle)."""
    buffer = io.BytesIO()
    np.save(buffer, ranks.astype(np.int32), allow_pickle=False)
    return buffer.getvalue()


def ranks_from_bytes(payload: bytes) -> np.ndarray:
    return np.load(io.BytesIO(payload), allow_pickle=False)
