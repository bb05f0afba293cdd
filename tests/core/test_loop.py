"""The recursive loop end to end, the augmentation baselines and the data analyses."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from rsir.analysis import approximate_entropy, describe, train_view
from rsir.augmentation import augment, stack_insertion
from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from rsir.errors import ConfigError
from rsir.loop import run_iterations
from rsir.models import build_model
from rsir.training import STOP_METRIC

STUDENT = ModelConfig(dim=16, heads=2, max_len=20)
FAST = TrainConfig(max_epochs=3, lr=1e-2, patience=3)
GEN = GenerationConfig(tau=10, p=0.5, m=2, max_len=20)


def test_two_iterations_end_to_end(small_dataset):
    stages = []
    report = run_iterations(small_dataset, STUDENT, FAST, GEN, iterations=2, progress=False,
                            on_stage=lambda k, name, info: stages.append((k, name)))
    assert [r.iteration for r in report.iterations] == [0, 1, 2]
    sizes = [r.dataset["synthetic_sequences"] for r in report.iterations]
    assert sizes[0] == 0 and sizes[1] > 0 and sizes[2] >= sizes[1]
    versions = {r.dataset["version"] for r in report.iterations}
    assert len(versions) == 3
    assert report.final_dataset.num_real == small_dataset.num_real
    best = max(range(3), key=lambda k: report.iterations[k].valid[STOP_METRIC])
    assert report.selected == best  # chosen on validation, not test
    assert report.iterations[1].generation["rows"] > 0 and report.iterations[1].merge["added"] == sizes[1]
    assert set(report.significance) == {"recall@10", "ndcg@10"}
    assert (0, "train_student") in stages and (1, "generate") in stages and (2, "evaluated") in stages


def test_cheap_teacher_and_fixed_teacher(small_dataset):
    cheap = run_iterations(small_dataset, STUDENT, FAST, GEN, iterations=1, progress=False,
                           teacher=ModelConfig(name="gru", dim=8, max_len=20))
    assert "train_teacher" in cheap.iterations[0].seconds
    fixed = build_model(ModelConfig(name="gru", dim=8, max_len=20), small_dataset.num_items)
    stages = []
    frozen = run_iterations(small_dataset, STUDENT, FAST, GEN, iterations=1, progress=False, teacher=fixed,
                            on_stage=lambda k, name, info: stages.append(name))
    assert "train_teacher" not in stages and frozen.iterations[1].dataset["synthetic_sequences"] >= 0


def test_students_on_synthetic_data_get_the_real_data_stage_and_insertion(small_dataset):
    report = run_iterations(small_dataset, STUDENT, replace(FAST, finetune_real=True, insertion_ratio=1.0), GEN,
                            iterations=1, progress=False)
    base, student = report.iterations
    assert base.finetune_kept is None and isinstance(student.finetune_kept, bool)
    assert report.to_dict()["iterations"][1]["finetune_kept"] is student.finetune_kept
    # the report says what the student trained on beyond D_1: as many Insertion sequences as RSIR's
    assert base.insertion_sequences == 0 and student.insertion_sequences == student.dataset["synthetic_sequences"] > 0


def test_negative_iterations_are_refused(small_dataset):
    with pytest.raises(ConfigError):
        run_iterations(small_dataset, STUDENT, FAST, GEN, iterations=-1, progress=False)


@pytest.mark.parametrize("method", ["reorder", "insertion"])
def test_augmentation_adds_exactly_count(small_dataset, method):
    out = augment(small_dataset, method, count=123, seed=1)
    assert out.num_synthetic == 123 and out.num_real == small_dataset.num_real
    train, _ = small_dataset.training(50)
    sources = {train.row(i).tobytes() for i in range(len(train))}
    for i in range(small_dataset.num_real, len(out)):
        seq = out.sequence(i)
        if method == "reorder":
            assert any(Counter(seq.tolist()) == Counter(train.row(j).tolist())
                       for j in range(len(train)) if len(train.row(j)) == len(seq))
        else:
            assert seq.tobytes() not in sources
    assert augment(small_dataset, method, count=123, seed=1).version == out.version


def test_stack_insertion_puts_insertion_between_real_and_synthetic(small_dataset):
    """D ∪ I ∪ D': the real users as they were, then Insertion's sequences made from the real users
    alone (as the Insertion baseline makes them), then the dataset's own synthetic ones in order."""
    rsir = augment(small_dataset, "reorder", count=40, seed=2)  # stands in for RSIR's sequences
    stacked = stack_insertion(rsir, 1.0, seed=3)
    insertion = augment(small_dataset, "insertion", count=40, seed=3)
    assert (stacked.num_real, len(stacked)) == (small_dataset.num_real, small_dataset.num_real + 80)
    assert stacked.version == insertion.with_synthetic(
        [rsir.sequence(i) for i in range(rsir.num_real, len(rsir))]).version
    assert stacked.name == f"{rsir.name}+insertion" and stack_insertion(rsir, 0.5, seed=3).num_synthetic == 60
    assert stack_insertion(rsir, 0.0) is rsir and stack_insertion(small_dataset, 1.0) is small_dataset
    with pytest.raises(ConfigError):
        stack_insertion(rsir, -1.0)


def test_augmentation_refuses_unknown_method(small_dataset):
    with pytest.raises(ConfigError):
        augment(small_dataset, "swap", 10)


def test_approximate_entropy_by_hand():
    # m = 2 windows of [1,2,1,2,1]: (1,2)x2, (2,1)x2 → Φ2 = ln(1/2); m = 3: (1,2,1)x2, (2,1,2)x1
    phi2 = math.log(0.5)
    phi3 = (2 * math.log(2 / 3) + math.log(1 / 3)) / 3
    assert approximate_entropy(np.array([1, 2, 1, 2, 1])) == pytest.approx(phi2 - phi3)
    # all-distinct sequence: every window is unique
    assert approximate_entropy(np.array([4, 5, 6, 7])) == pytest.approx(math.log(1 / 3) - math.log(1 / 2))
    assert approximate_entropy(np.array([1, 2, 3])) is None


def test_train_view_matches_the_papers_counting():
    from rsir.datasets import SequenceDataset
    ds = SequenceDataset.from_sequences([np.arange(1, 61), np.array([1, 2, 3, 4, 5])], num_items=60)
    view = train_view(ds, max_len=50)
    assert view["interactions"] == (50 - 3) + (5 - 3)
    assert view["items"] == len(set(range(11, 59)) | {1, 2, 3})
    stats = describe(ds)
    assert stats["users"] == 2 and stats["interactions"] == 65
