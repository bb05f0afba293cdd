"""Shared fixtures: small seeded synthetic datasets and files in every supported format."""

from __future__ import annotations

import pytest
import torch

from rsir.synthetic import synthetic_dataset

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def small_dataset():
    """600 users, 120 items: big enough to learn from in seconds."""
    return synthetic_dataset(num_users=600, num_items=120, num_clusters=6, seed=7)


@pytest.fixture(scope="session")
def tiny_dataset():
    return synthetic_dataset(num_users=40, num_items=30, num_clusters=3, seed=3)
