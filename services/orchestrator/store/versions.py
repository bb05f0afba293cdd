"""Content-addressed dataset versions: the blob in object storage, the lineage record in Redis."""

from __future__ import annotations

import time
from typing import Any

from rsir.analysis import describe
from rsir.datasets import SequenceDataset
from rsir.jsonio import dumps
from services.common.artifacts import DatasetRef, fetch_dataset
from services.orchestrator.store.records import Records


def public(record: dict[str, Any]) -> dict[str, Any]:
    """A version record as the API shows it: without the storage URIs (``file:///…`` paths, bucket
    keys) that it keeps for the services, at any depth (a teacher checkpoint's included)."""
    return {k: public(v) if isinstance(v, dict) else v for k, v in record.items() if k != "uri"}


class Versions(Records):
    kind, index = "dataset", "datasets"

    def publish(self, dataset: SequenceDataset, lineage: dict[str, Any],
                stats: dict[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
        """Store ``dataset`` under its content address and record its lineage; (record, created).

        The blob is written before the record, so a record always points at a stored blob; a crash
        in between leaves a blob that the repeated stage finds and reuses. Publishing the same
        content twice finds the record (first writer wins).
        """
        existing = self.get(dataset.version)
        if existing is not None:
            return existing, False
        objects, key = self.store.objects, f"datasets/{dataset.version}.npz"
        head = objects.head(key)
        if head is None:
            head = objects.put(key, dataset.to_bytes())
        record = {"version": dataset.version, "name": dataset.name, "uri": head.uri, "sha256": head.sha256,
                  "size": head.size, "created_at": time.time(),
                  "stats": stats if stats is not None else describe(dataset), **lineage}
        if not self.redis.set(self.key(dataset.version), dumps(record), nx=True):
            return self.get(dataset.version) or record, False  # another writer won the race
        self.redis.zadd(self.store.key(self.index), {dataset.version: record["created_at"]})
        return record, True

    def ref(self, version: str) -> DatasetRef:
        record = self.get(version)
        if record is None:
            raise LookupError(f"no dataset version {version}")
        return DatasetRef(record["uri"], version)

    def load(self, version: str) -> SequenceDataset:
        return fetch_dataset(self.store.objects, self.ref(version))
