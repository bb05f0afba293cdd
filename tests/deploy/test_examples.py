"""The run specs a user sends first (examples/*.json, the `rsir up --demo` runs) pass the
orchestrator's own validation."""

from __future__ import annotations

import json

import pytest
from deploy_helpers import ROOT

from rsir.sources import BENCHMARKS, SYNTHETIC
from services.orchestrator.schemas import RunSpec
from services.stack_runs import demo_run

EXAMPLES = sorted((ROOT / "examples").glob("*.json"))


def test_the_readme_examples_are_there():
    assert {p.name for p in EXAMPLES} >= {"beauty-sasrec.json", "beauty-gru-teaches-sasrec.json",
                                          "synthetic-smoke.json"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_a_valid_run_spec(path):
    spec = RunSpec.model_validate(json.loads(path.read_text()))
    assert (spec.dataset in BENCHMARKS or spec.dataset == SYNTHETIC) and spec.name == path.stem


def test_smoke_example_needs_no_download_and_stays_small():
    spec = RunSpec.model_validate(json.loads((ROOT / "examples/synthetic-smoke.json").read_text()))
    assert spec.dataset == SYNTHETIC and spec.iterations == 1
    assert spec.train.max_epochs is not None and spec.train.max_epochs <= 10


def test_weak_to_strong_example_has_a_cheaper_teacher_than_its_student():
    spec = RunSpec.model_validate(json.loads((ROOT / "examples/beauty-gru-teaches-sasrec.json").read_text()))
    teacher, student = spec.teacher.model.config(), spec.student.config()
    assert teacher.name == "gru" and teacher.dim < student.dim and teacher.layers < student.layers


def test_the_demo_is_a_valid_run_spec_on_its_own_recipe():
    spec = RunSpec.model_validate(demo_run("0" * 64))
    recipe, config = spec.resolve()
    assert (spec.name, recipe) == ("demo", "demo") and config.iterations >= 1
