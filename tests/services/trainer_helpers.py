"""The small job the trainer's multi-process tests run, on one node and across nodes."""

from __future__ import annotations

import functools
from pathlib import Path

from rsir.config import ModelConfig, TrainConfig
from rsir.datasets import SequenceDataset
from rsir.synthetic import synthetic_dataset
from services.common.storage import LocalStore
from services.trainer.rendezvous import Rendezvous
from services.trainer.servicer import TrainerServicer

MODEL = ModelConfig(name="sasrec", dim=16, layers=1, heads=1, max_len=20, dropout=0.0)
TRAIN = TrainConfig(max_epochs=2, batch_size=64, lr=1e-2, device="cpu", precision="fp32")


@functools.cache
def small_dataset() -> SequenceDataset:
    return synthetic_dataset(num_users=200, num_items=50, num_clusters=4, seed=5)


def serve(root: Path, nproc: int, rendezvous: Rendezvous | None = None) -> tuple[LocalStore, TrainerServicer]:
    """A store under ``root`` and a CPU trainer on it that runs each job as ``nproc`` processes a node."""
    store = LocalStore(root / f"store-{nproc}-{rendezvous is not None}")
    return store, TrainerServicer(store, default_device="cpu", threads=1, nproc=nproc, rendezvous=rendezvous)
