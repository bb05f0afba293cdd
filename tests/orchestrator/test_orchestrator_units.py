"""The orchestrator's pure pieces: the stopping rule, spec round trips, settings parsing, strict JSON."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest

from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from rsir.jsonio import dumps
from rsir.recursion import after_student
from services.orchestrator.report import run_document
from services.orchestrator.schemas import GenerationSpec, ModelSpec, RunSpec, TrainSpec
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.shards import shard_keys


@pytest.mark.parametrize(("scores", "iterations", "patience", "expected"), [
    ([0.1], 2, None, (0, None)),
    ([0.1, 0.2, 0.3], 2, None, (2, "iterations")),
    ([0.3, 0.2], 5, 1, (0, "early_stop")),
    ([0.3, 0.2], 5, 2, (0, None)),
    ([0.1, 0.3, 0.3, 0.2], 5, 2, (1, "early_stop")),  # a tie keeps the earlier iteration
    ([0.2, 0.1, 0.3], 5, 2, (2, None)),
])
def test_selection_and_early_stop(scores, iterations, patience, expected):
    assert after_student(scores, iterations, patience) == expected


def test_spec_round_trips_through_the_run_document_with_infinite_tau():
    spec = RunSpec.model_validate({"dataset": "synthetic", "generation": {"tau": "inf", "p": 0.3},
                                   "train": {"synthetic_weight": 0.5, "finetune_real": True, "finetune_lr_scale": 0.3},
                                   "teacher": {"model": {"name": "gru", "dim": 8}}})
    stored = json.loads(dumps(run_document(spec, *spec.resolve())))  # strict JSON, as Redis holds it
    assert stored["spec"]["generation"]["tau"] == "inf"  # τ = ∞ has one spelling in JSON (rsir.jsonio)
    again = RunSpec.model_validate(stored["spec"])
    assert math.isinf(again.generation.config(0).tau) and again.generation.config(0).p == 0.3
    assert again.teacher.model.config().name == "gru" and again == spec
    train = again.train.config(0)
    assert train.finetune_real and (train.synthetic_weight, train.finetune_lr_scale) == (0.5, 0.3)


@pytest.mark.parametrize(("spec", "config"), [(ModelSpec, ModelConfig), (TrainSpec, TrainConfig),
                                              (GenerationSpec, GenerationConfig)])
def test_specs_mirror_the_core_configs(spec, config):
    """Every config field can be set through the API, except the seed, which is the run's."""
    assert set(spec.model_fields) == {f.name for f in dataclasses.fields(config)} - {"seed"}


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_GENERATOR_ADDRS", "gen-a:50052, gen-b:50052,")
    monkeypatch.setenv("ORCHESTRATOR_API_TOKEN", "s3cret-value")
    monkeypatch.setenv("ORCHESTRATOR_MAX_CONCURRENT_RUNS", "3")
    settings = OrchestratorSettings()
    assert settings.generator_addrs == ["gen-a:50052", "gen-b:50052"]
    assert settings.token("api_token") == "s3cret-value" and "s3cret" not in repr(settings)
    assert settings.max_concurrent_runs == 3 and settings.redis_url is None
    monkeypatch.setenv("ORCHESTRATOR_GENERATOR_ADDRS", " , ")
    with pytest.raises(ValueError, match="at least one generator"):
        OrchestratorSettings()


def test_documents_are_strict_json_and_shard_keys_are_fixed():
    assert json.loads(dumps({"a": float("nan"), "b": [float("inf"), 1.5]})) == {"a": None, "b": ["inf", 1.5]}
    assert shard_keys("r0123456789ab", 1, 2) == ["generated/r0123456789ab/1/shard-0-of-2.npz",
                                                 "generated/r0123456789ab/1/shard-1-of-2.npz"]
