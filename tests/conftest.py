"""Shared fixtures: small seeded synthetic datasets and files in every supported format."""

from __future__ import annotations

import pytest
import torch

from rsir.data import write_sequences
from rsir.synthetic import synthetic_dataset

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def small_dataset():
    """600 users, 120 items: big enough to learn from in seconds."""
    return synthetic_dataset(num_users=600, num_items=120, num_clusters=6, seed=7)


@pytest.fixture(scope="session")
def tiny_dataset():
    return synthetic_dataset(num_users=40, num_items=30, num_clusters=3, seed=3)


@pytest.fixture(scope="session")
def tiny_text(tmp_path_factory) -> bytes:
    """120 synthetic users over 40 items in the one-user-per-line format."""
    data = synthetic_dataset(num_users=120, num_items=40, num_clusters=4, seed=3)
    path = tmp_path_factory.mktemp("data") / "tiny.txt"
    write_sequences(path, data.users, data.sequences.to_list())
    return path.read_bytes()
