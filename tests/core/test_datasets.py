"""Leave-one-out views, windows, versions and persistence of SequenceDataset."""

from __future__ import annotations

import numpy as np
import pytest

from rsir.datasets import SequenceDataset
from rsir.errors import DataError
from rsir.synthetic import synthetic_dataset


def _toy() -> SequenceDataset:
    seqs = [np.arange(1, 8), np.array([5, 6, 7]), np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 10])]
    return SequenceDataset.from_sequences(seqs, num_items=12, name="toy")


def test_leave_one_out_targets_and_history():
    ds = _toy()
    test, valid = ds.evaluation("test", max_len=4), ds.evaluation("valid", max_len=4)
    assert test.targets.tolist() == [7, 7, 10]
    assert valid.targets.tolist() == [6, 6, 1]
    assert test.history.row(0).tolist() == [1, 2, 3, 4, 5, 6]
    assert test.inputs.row(0).tolist() == [3, 4, 5, 6]  # the most recent max_len items
    assert valid.inputs.row(2).tolist() == [5, 4, 3, 2]
    assert valid.history.row(1).tolist() == [5]


def test_training_view_drops_held_out_items_and_windows():
    ds = _toy()
    train, synthetic = ds.training(max_len=3)
    assert not synthetic.any()
    assert train.row(0).tolist() == [2, 3, 4, 5]  # max_len inputs + 1 target, without 6 and 7
    assert train.row(1).tolist() == [5]
    assert train.row(2).tolist() == [5, 4, 3, 2]


def test_synthetic_sequences_train_whole_and_never_evaluate():
    ds = _toy().with_synthetic([np.array([1, 2, 3]), np.array([4, 5, 6, 7])])
    assert ds.num_real == 3 and ds.num_synthetic == 2
    train, synthetic = ds.training(max_len=10)
    assert synthetic.tolist() == [False, False, False, True, True]
    assert train.row(4).tolist() == [4, 5, 6, 7]
    assert len(ds.evaluation("test", 10).targets) == 3
    assert ds.users[3:].tolist() == [4, 5]


def test_version_depends_on_content_only():
    a, b = _toy(), _toy()
    assert a.version == b.version
    renamed = SequenceDataset(a.num_items, a.users, a.offsets, a.items, a.num_real, name="other")
    assert renamed.version == a.version
    assert a.with_synthetic([np.array([1, 2, 3])]).version != a.version
    changed = SequenceDataset(a.num_items, a.users, a.offsets, np.where(a.items == 1, 2, a.items), a.num_real)
    assert changed.version != a.version


def test_arrays_are_immutable():
    ds = _toy()
    with pytest.raises(ValueError):
        ds.items[0] = 3


def test_bytes_round_trip_and_tamper_detection():
    ds = _toy().with_synthetic([np.array([1, 2, 3])])
    back = SequenceDataset.from_bytes(ds.to_bytes(), expect_version=ds.version)
    assert back.version == ds.version and back.num_real == 3 and back.name == "toy"
    with pytest.raises(DataError, match="does not match"):
        SequenceDataset.from_bytes(ds.to_bytes(), expect_version="0" * 64)
    with pytest.raises(DataError, match="not a stored dataset"):
        SequenceDataset.from_bytes(ds.to_bytes()[:-40])


def test_invalid_content_is_refused():
    with pytest.raises(DataError, match="at least 3"):
        SequenceDataset.from_sequences([np.array([1, 2])], num_items=3)
    with pytest.raises(DataError, match=r"1\.\.3"):
        SequenceDataset.from_sequences([np.array([1, 2, 4])], num_items=3)


def test_synthetic_is_seeded_and_structured():
    a, b, c = synthetic_dataset(seed=1), synthetic_dataset(seed=1), synthetic_dataset(seed=2)
    assert a.version == b.version != c.version
    lengths = a.sequences.lengths
    assert lengths.min() >= 5
    # no user repeats an item
    assert all(len(set(a.sequence(i).tolist())) == len(a.sequence(i)) for i in range(len(a)))
