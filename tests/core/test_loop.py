"""The recursive loop end to end, the augmentation baselines and the data analyses."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch

import rsir.loop
from rsir.analysis import approximate_entropies, approximate_entropy, describe, train_view
from rsir.augmentation import augment, stack_insertion
from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from rsir.datasets import Ragged
from rsir.errors import ConfigError
from rsir.loop import run_local
from rsir.models import build_model
from rsir.recipes import RunConfig, TeacherConfig, recipe_names, resolve
from rsir.recursion import Stage, after_student
from rsir.training import STOP_METRIC

STUDENT = ModelConfig(dim=16, heads=2, max_len=20)
FAST = TrainConfig(max_epochs=3, lr=1e-2, patience=3)
GEN = GenerationConfig(tau=10, p=0.5, m=2, max_len=20)


def _config(**fields) -> RunConfig:
    return RunConfig(**{"student": STUDENT, "train": FAST, "generation": GEN, **fields})


def test_two_iterations_end_to_end(small_dataset):
    stages = []
    done = run_local(small_dataset, _config(iterations=2), progress=False,
                     on_stage=lambda state: stages.append((state.iteration, state.stage)))
    state = done.state
    assert [it.iteration for it in state.iterations] == [0, 1, 2]
    sizes = [it.dataset_stats["synthetic_sequences"] for it in state.iterations]
    assert sizes[0] == 0 and sizes[1] > 0 and sizes[2] >= sizes[1]
    assert len(set(state.datasets)) == 3 and state.datasets[0] == small_dataset.version
    assert done.final_dataset.num_real == small_dataset.num_real
    best = max(range(3), key=lambda k: (state.iterations[k].student.valid[STOP_METRIC], -k))
    assert state.selected == best and state.stopped_by == "iterations"  # chosen on validation, not test
    assert state.iterations[0].generation["stats"]["rows"] > 0
    assert state.iterations[0].merge["added"] == sizes[1]
    assert (state.significance is None) == (best == 0)  # no test of iteration 0 against itself
    if best:
        assert set(state.significance["tests"]) == {"recall@10", "ndcg@10"}
    assert (0, Stage.GENERATE) in stages and (1, Stage.TRAIN_STUDENT) in stages and stages[-1][1] is Stage.DONE


def test_cheap_teacher_and_fixed_teacher(small_dataset):
    cheap = run_local(small_dataset, _config(teacher=TeacherConfig(model=ModelConfig(name="gru", dim=8, max_len=20))),
                      progress=False)
    assert cheap.state.iterations[0].teacher is not None and "train_teacher" in cheap.state.iterations[0].timings
    fixed = build_model(ModelConfig(name="gru", dim=8, max_len=20), small_dataset.num_items)
    stages = []
    frozen = run_local(small_dataset, _config(teacher=TeacherConfig(checkpoint="in-memory")), progress=False,
                       fixed_teacher=fixed, on_stage=lambda state: stages.append(state.stage))
    assert Stage.TRAIN_TEACHER not in stages and frozen.state.iterations[0].teacher is None
    assert frozen.state.iterations[0].generation["teacher"] == "fixed"


def test_students_on_synthetic_data_get_the_real_data_stage_and_insertion(small_dataset):
    done = run_local(small_dataset, _config(train=replace(FAST, finetune_real=True, insertion_ratio=1.0)),
                     progress=False)
    base, student = (it.student for it in done.state.iterations)
    assert base.finetune_kept is None and isinstance(student.finetune_kept, bool)
    # the report says what the student trained on beyond D_1: as many Insertion sequences as RSIR's
    synthetic = done.state.iterations[1].dataset_stats["synthetic_sequences"]
    assert base.insertion_sequences == 0 and student.insertion_sequences == synthetic > 0


def test_a_real_stage_teacher_is_the_base_after_its_real_data_stage(small_dataset):
    """On D_0 the student had no real-data stage, so the teacher gets one; on D_1 the student had one
    and teaches as it is."""
    config = _config(iterations=2, train=replace(FAST, finetune_real=True, finetune_lr_scale=0.3),
                     teacher=TeacherConfig(real_stage=True))
    stages = []
    done = run_local(small_dataset, config, progress=False,
                     on_stage=lambda state: stages.append((state.iteration, state.stage)))
    first, second = done.state.iterations[0], done.state.iterations[1]
    assert first.teacher is not None and isinstance(first.teacher.finetune_kept, bool)
    assert first.generation["teacher"] == "teacher-0" and second.teacher is None
    assert second.generation["teacher"] == "student-1" and (1, Stage.TRAIN_TEACHER) not in stages
    # the student of iteration 0 is left as it was: the teacher trained a copy
    assert done.result(0).finetune_kept is None


def test_warm_started_students_begin_from_the_previous_student(small_dataset, monkeypatch):
    starts, fit = [], rsir.loop.train

    def spy(data, model_config, config, *, model=None, **kwargs):
        starts.append(None if model is None else {k: v.clone() for k, v in model.state_dict().items()})
        return fit(data, model_config, config, model=model, **kwargs)

    monkeypatch.setattr(rsir.loop, "train", spy)
    done = run_local(small_dataset, _config(iterations=2, warm_start=True), progress=False)
    assert len(starts) == 3 and starts[0] is None
    for k in (1, 2):  # each began from the one before, and left it as it was (it trained a copy)
        previous = done.workers.models[f"student-{k - 1}"].state_dict()
        assert all(torch.equal(starts[k][name], weights) for name, weights in previous.items())
        now = done.workers.models[f"student-{k}"].state_dict()
        assert not all(torch.equal(now[name], weights) for name, weights in previous.items())


def test_every_shipped_recipe_resolves():
    configs = {name: resolve(name, "beauty")[1] for name in recipe_names()}
    assert {"beauty", "beauty-fast", "default", "demo", "paper"} <= set(configs)
    fast, full = configs["beauty-fast"], configs["beauty"]
    assert fast.warm_start and not full.warm_start and fast.train.patience < full.train.patience
    assert replace(fast, warm_start=False, train=full.train) == full  # otherwise the beauty recipe


def test_early_stop_and_selection(small_dataset):
    assert after_student([0.1, 0.2, 0.15], iterations=5, patience=1) == (1, "early_stop")
    assert after_student([0.1, 0.1], iterations=5, patience=None) == (0, None)  # the earliest on a tie
    assert after_student([0.1, 0.3], iterations=1, patience=None) == (1, "iterations")


def test_bad_run_configs_are_refused():
    with pytest.raises(ConfigError, match="iterations"):
        _config(iterations=-1)
    with pytest.raises(ConfigError, match="iterations"):
        RunConfig.from_dict({"iterations": True})
    with pytest.raises(ConfigError, match=r"generation\.max_len"):
        _config(generation=replace(GEN, max_len=40))
    with pytest.raises(ConfigError, match="teacher"):
        TeacherConfig(model=ModelConfig(name="gru"), checkpoint="x")


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


def test_approximate_entropies_match_the_definition_row_by_row():
    # the vectorised ApEn of many rows, repeats included, against Φ computed window by window
    def by_definition(row: list[int], m: int = 2) -> float:
        def phi(width: int) -> float:
            windows = [tuple(row[k:k + width]) for k in range(len(row) - width + 1)]
            return sum(math.log(windows.count(w) / len(windows)) for w in windows) / len(windows)
        return phi(m) - phi(m + 1) if len(row) >= m + 2 else math.nan

    rng = np.random.default_rng(0)
    rows = [rng.integers(1, 4, size=rng.integers(0, 12)) for _ in range(300)]
    got = approximate_entropies(Ragged.from_list(rows))
    expected = [by_definition(row.tolist()) for row in rows]
    assert np.isnan(got).sum() == sum(len(row) < 4 for row in rows)
    np.testing.assert_allclose(got, expected, equal_nan=True)
    # in blocks of a few rows each (a bound on memory), the same values
    np.testing.assert_allclose(approximate_entropies(Ragged.from_list(rows), block_items=20), got, equal_nan=True)


def test_train_view_matches_the_papers_counting():
    from rsir.datasets import SequenceDataset
    ds = SequenceDataset.from_sequences([np.arange(1, 61), np.array([1, 2, 3, 4, 5])], num_items=60)
    view = train_view(ds, max_len=50)
    assert view["interactions"] == (50 - 3) + (5 - 3)
    assert view["items"] == len(set(range(11, 59)) | {1, 2, 3})
    stats = describe(ds)
    assert stats["users"] == 2 and stats["interactions"] == 65
