"""The orchestrator's pure pieces: the stopping rule, spec round trips, settings parsing, strict JSON,
the classification of failed service calls and the run's retry budget."""

from __future__ import annotations

import dataclasses
import json
import math
import random
import time

import grpc
import pytest

from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from rsir.jsonio import dumps
from rsir.recursion import after_student
from services.common.calls import MemoryBudget
from services.generator.client import IncompleteStream
from services.orchestrator.faults import CallFailed, Retries, classify, redact
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


class Status(grpc.RpcError):
    """An RpcError as a call raises it: a status code and its details."""

    def __init__(self, code: grpc.StatusCode, details: str):
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


S = grpc.StatusCode


def _budget_refusal(need_mb: int, free_mb: int, limit_mb: int) -> str:
    """What a service's memory budget answers a call that does not fit now."""
    budget = MemoryBudget(limit_mb * 2**20, "TRAINER_MEMORY_BUDGET_MB")
    return str(budget.refusal(need_mb * 2**20, free_mb * 2**20, "training job 'j'", "lower the batch"))


@pytest.mark.parametrize(("error", "retry"), [
    (Status(S.UNAVAILABLE, "failed to connect to all addresses"), True),
    (Status(S.DEADLINE_EXCEEDED, "deadline"), True), (Status(S.ABORTED, "aborted"), True),
    (Status(S.CANCELLED, "server shutting down"), True),
    (Status(S.RESOURCE_EXHAUSTED, "busy: 1 calls in flight (limit 1); retry later or elsewhere"), True),
    (Status(S.RESOURCE_EXHAUSTED, "Received message larger than max (9 vs. 4)"), False),
    (Status(S.RESOURCE_EXHAUSTED, "CUDA out of memory: the batch can never fit"), False),
    (Status(S.RESOURCE_EXHAUSTED, _budget_refusal(need_mb=512, free_mb=100, limit_mb=1024)), True),  # busy for now
    (Status(S.RESOURCE_EXHAUSTED, _budget_refusal(need_mb=2048, free_mb=100, limit_mb=1024)), False),  # never fits
    (Status(S.INTERNAL, "Exception iterating responses: bug"), False), (Status(S.UNKNOWN, "?"), False),
    (Status(S.INVALID_ARGUMENT, "bad"), False), (Status(S.FAILED_PRECONDITION, "bad data"), False),
    (Status(S.NOT_FOUND, "no blob"), False), (Status(S.OUT_OF_RANGE, "no"), False),
    (Status(S.UNAUTHENTICATED, "token"), False),
    (IncompleteStream("the generator stored no shard result"), False), (ConnectionResetError("reset"), True),
    (ValueError("a bug"), False),
])
def test_each_failure_is_classified_once_naming_the_service_and_its_address(error, retry):
    fault = classify(error, "generator", "10.0.0.7:50052")
    assert fault.retry is retry and fault.service == "generator"
    assert "the generator at 10.0.0.7:50052" in fault.reason
    if isinstance(error, grpc.RpcError):
        assert fault.reason.startswith(f"gRPC {error.code().name} from the generator at 10.0.0.7:50052: ")
        assert fault.code == error.code().name


def test_storage_paths_are_cut_from_reasons():
    fault = classify(Status(S.NOT_FOUND, "file:///srv/rsir/objects/checkpoints/a.pt: no checkpoint there"),
                     "trainer", "t:1")
    assert fault.reason == "gRPC NOT_FOUND from the trainer at t:1: .../a.pt: no checkpoint there"
    assert redact("s3://bucket/prefix/datasets/v.npz and '/home/u/.state/x.npz', shard 0/2 on h:1") == \
        ".../v.npz and '.../x.npz', shard 0/2 on h:1"


def test_the_run_budget_bounds_retries_and_backoff_grows_capped_with_jitter():
    seen = []
    retries = Retries(3, 0.5, 4.0, 60.0, used=1, on_retry=seen.append, rng=random.Random(0))
    down = classify(Status(S.UNAVAILABLE, "down"), "trainer", "t:1")
    now = time.monotonic()
    retries.spend(down, now)
    retries.spend(down, now)
    with pytest.raises(CallFailed, match=r"gRPC UNAVAILABLE from the trainer at t:1: down .*3 retries are spent"):
        retries.spend(down, now)
    assert retries.used == 3 and seen == [down, down]
    with pytest.raises(CallFailed, match="INTERNAL"):  # not retryable: no budget is drawn
        Retries(3, 0.5, 4.0, 60.0).spend(classify(Status(S.INTERNAL, "bug"), "trainer", "t:1"), now)
    with pytest.raises(CallFailed, match="still failing after 5 s"):
        Retries(3, 0.5, 4.0, 5.0).spend(down, now - 6)
    for streak, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 4.0)):
        delays = [retries.delay(streak) for _ in range(200)]
        assert ceiling / 2 <= min(delays) < max(delays) <= ceiling
