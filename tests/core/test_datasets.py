"""Leave-one-out views, windows, versions and persistence of SequenceDataset."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from rsir.datasets import SequenceDataset
from rsir.errors import DataError, InvalidDataError
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


def _arrays(**change):
    """A valid layout (3 real users, 1 synthetic sequence, 9 items) with some of its parts replaced."""
    parts = {"num_items": 9, "users": [1, 2, 3, 4], "offsets": [0, 3, 7, 10, 12],
             "items": [1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3], "num_real": 3, **change}
    return parts["num_items"], parts["users"], parts["offsets"], parts["items"], parts["num_real"]


@pytest.mark.parametrize(("change", "message"), [
    ({"num_real": 0}, r"num_real=0 is outside \[1, 4\]"),
    ({"num_real": 5}, r"num_real=5 is outside \[1, 4\]"),
    ({"num_real": 2.5}, "num_real must be an integer"),
    ({"offsets": [0, 7, 3, 10, 12]}, r"offsets decrease at sequence 1 \(7 then 3\)"),
    ({"offsets": [1, 3, 7, 10, 12]}, "offsets must start at 0"),
    ({"offsets": [0, 3, 7, 10, 13]}, "offsets end at 13 but there are 12 items"),
    ({"offsets": [0, 3, 7, 12]}, "offsets has 4 entries for 4 sequences"),
    ({"offsets": [0, 0, 7, 10, 12]}, r"real user 1 \(sequence 0\) has 0 item"),
    ({"offsets": [0, 3, 7, 11, 12]}, r"synthetic sequence 4 \(sequence 3\) has 1 item\(s\); it needs at least 2"),
    ({"items": [0, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3]}, r"item id 0 is outside the catalogue 1\.\.9"),
    ({"num_items": 8}, r"item id 9 is outside the catalogue 1\.\.8"),
    ({"num_items": 0}, "num_items must be at least 1"),
    ({"items": np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3]) + 0.9}, "items must hold integer ids, got float64"),
    ({"users": np.array([1, 2, 3, 4], dtype=np.uint64) << np.uint64(63)}, "users holds .*beyond int64"),
    ({"users": [1, 1, 3, 4]}, "user id 1 appears more than once"),
    ({"users": [-1, 2, 3, 4]}, "user id -1 is negative"),
    ({"users": [2, 3, 4, 1]}, "synthetic pseudo-users need ids above every real user's"),
    ({"items": np.arange(1, 13).reshape(3, 4) % 9 + 1}, r"items must be a 1-D array, got shape \(3, 4\)"),
])
def test_structurally_broken_arrays_are_refused(change, message):
    with pytest.raises(InvalidDataError, match=message):
        SequenceDataset(*_arrays(**change))


def test_float_ids_are_refused_not_truncated():
    with pytest.raises(InvalidDataError, match="integer ids"):
        SequenceDataset.from_sequences([np.array([1.9, 2.0, 3.0])])
    assert SequenceDataset(*_arrays()).version == SequenceDataset(*_arrays(items=np.array(_arrays()[3],
                                                                                          dtype=np.int32))).version


def _npz(num_items: object = 9, num_real: object = 3, **arrays) -> bytes:
    buffer = io.BytesIO()
    _, users, offsets, items, _ = _arrays(**arrays)
    meta = json.dumps({"format": "rsir-dataset/1", "num_items": num_items, "num_real": num_real})
    np.savez_compressed(buffer, users=np.asarray(users), offsets=np.asarray(offsets), items=np.asarray(items),
                        meta=np.frombuffer(meta.encode(), dtype=np.uint8))
    return buffer.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_stored_versions_are_validated_when_decoded(tmp_path):
    assert SequenceDataset.from_bytes(_npz()).num_real == 3
    for payload, message in [
        (_npz(num_real=0), "num_real=0"),
        (_npz(offsets=[0, 7, 3, 10, 12]), "offsets decrease"),
        (_npz(num_items=10**12), "a catalogue of 1000000000000 items is above the limit of 10000000 items "
                                 r"\(the max_items setting\)"),
        (_npz(num_items=9.0), "num_items must be a positive integer, got 9.0"),
        (_npz(num_real=None), "num_real must be an integer, got None"),
        (_npz(items=np.array(_arrays()[3], dtype=np.float64) + 0.9), "integer ids"),
        (_npz(users=[1, 1, 3, 4]), "appears more than once"),
        (_npy(np.arange(10)), "a dataset .npz is a zip archive"),  # numpy once answered "pickled data"
        (b"1 2 3 4\n", "a dataset .npz is a zip archive"),
    ]:
        with pytest.raises(InvalidDataError, match=message) as err:
            SequenceDataset.from_bytes(payload)
        assert "pickle" not in str(err.value)
    with pytest.raises(InvalidDataError, match="above the limit of 8 items"):
        SequenceDataset.from_bytes(_npz(), max_items=8)
    path = tmp_path / "d.npz"
    path.write_bytes(_npz(num_items=10**12))
    with pytest.raises(InvalidDataError, match=f"{path}: a catalogue"):
        SequenceDataset.load(path)


def test_read_picks_the_reader_by_suffix_and_checks_the_cap(tmp_path):
    ds = SequenceDataset.from_sequences([np.array([1, 2, 3]), np.array([3, 2, 1, 2])], name="x")
    ds.save(tmp_path / "d.npz")
    assert SequenceDataset.read(tmp_path / "d.npz").version == ds.version
    (tmp_path / "d.txt").write_text("1 1 2 3\n2 3 2 1 2\n")
    assert SequenceDataset.read(tmp_path / "d.txt", name="y").version == ds.version
    with pytest.raises(DataError, match="above the limit of 2 items"):
        SequenceDataset.read(tmp_path / "d.npz", max_items=2)
