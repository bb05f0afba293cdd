"""Proto ↔ core conversions: field parity with the core dataclasses and lossless round trips."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from rsir.errors import ConfigError
from rsir.generation import GeneratedBatch, GenerationStats
from rsir.training import EpochReport
from rsir_api.v1 import common_pb2, generator_pb2, trainer_pb2
from services.common.artifacts import BlobRef, DatasetRef
from services.common.convert import config_from_message, config_to_message
from services.generator import convert as gconv
from services.trainer import convert as tconv

VERSION = "ab" * 32
PAIRS = [(ModelConfig, common_pb2.ModelSpec), (TrainConfig, trainer_pb2.TrainSpec),
         (GenerationConfig, generator_pb2.GenerationSpec), (GenerationStats, generator_pb2.GenerationStats)]


@pytest.mark.parametrize(("cls", "message"), PAIRS, ids=lambda x: x.__name__ if isinstance(x, type) else "")
def test_messages_mirror_the_core_dataclasses(cls, message):
    assert {f.name for f in dataclasses.fields(cls)} == set(message.DESCRIPTOR.fields_by_name)


@pytest.mark.parametrize("config", [
    ModelConfig(name="gru", dim=32, layers=3, heads=4, dropout=0.1, max_len=30, cl_weight=0.5),
    TrainConfig(loss="sampled", negatives=7, lr=0.01, time_budget=12.5, seed=3, device="cpu",
                synthetic_weight=0.5, finetune_real=True, finetune_lr_scale=0.3),
    TrainConfig(),
    GenerationConfig(tau=math.inf, p=0.0, m=2, top_k=3, prefix="random", target="future", dedup=False, seed=9),
    GenerationConfig(),
])
def test_configs_round_trip(config):
    message_cls = {ModelConfig: common_pb2.ModelSpec, TrainConfig: trainer_pb2.TrainSpec,
                   GenerationConfig: generator_pb2.GenerationSpec}[type(config)]
    wire = message_cls.FromString(config_to_message(config, message_cls).SerializeToString())
    assert config_from_message(type(config), wire, "x") == config


def test_unset_fields_take_core_defaults():
    assert config_from_message(GenerationConfig, generator_pb2.GenerationSpec(m=2), "config") == GenerationConfig(m=2)
    assert config_from_message(ModelConfig, common_pb2.ModelSpec(), "model") == ModelConfig()


@pytest.mark.parametrize(("spec", "match"), [
    (generator_pb2.GenerationSpec(tau=0), "config.tau"), (generator_pb2.GenerationSpec(tau=-1), "config.tau"),
    (generator_pb2.GenerationSpec(tau=math.nan), "config.tau"), (generator_pb2.GenerationSpec(p=1.5), "config.p"),
    (generator_pb2.GenerationSpec(m=0), "config.m"), (generator_pb2.GenerationSpec(prefix="middle"), "config.prefix"),
])
def test_bad_generation_settings_name_the_field(spec, match):
    with pytest.raises(ConfigError, match=match):
        config_from_message(GenerationConfig, spec, "config")


def _train_request(**kwargs) -> trainer_pb2.TrainRequest:
    base = dict(job_id="job-1", dataset=common_pb2.DatasetRef(uri="file:///x", version=VERSION))
    return trainer_pb2.TrainRequest(**{**base, **kwargs})


def test_train_job_validation():
    job = tconv.train_job(_train_request(), default_device="cpu")
    assert job.train.device == "cpu" and job.model == ModelConfig() and job.dataset == DatasetRef("file:///x", VERSION)
    assert tconv.train_job(_train_request(train=trainer_pb2.TrainSpec(device="auto")), "cpu").train.device == "auto"
    short_version = common_pb2.DatasetRef(uri="file:///x", version="v1")
    for bad, match in [(_train_request(job_id=""), "job_id"), (_train_request(job_id="../x"), "job_id"),
                       (_train_request(model=common_pb2.ModelSpec(name="bert")), "model.name: unknown model 'bert'"),
                       (_train_request(dataset=short_version), "dataset.version"),
                       (_train_request(dataset=common_pb2.DatasetRef(version=VERSION)), "dataset.uri"),
                       (_train_request(train=trainer_pb2.TrainSpec(lr=-1)), "train.lr"),
                       (_train_request(warm_start=True), "warm_start: needs init_checkpoint")]:
        with pytest.raises(ConfigError, match=match):
            tconv.train_job(bad)


def test_job_fingerprint_ignores_device_and_uri():
    a = tconv.train_job(_train_request(), "cpu")
    b = tconv.train_job(_train_request(dataset=common_pb2.DatasetRef(uri="s3://b/k", version=VERSION)), "cuda")
    c = tconv.train_job(_train_request(train=trainer_pb2.TrainSpec(seed=1)), "cpu")
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    # a warm start is another job than the real-data stage from the same checkpoint
    init = common_pb2.BlobRef(uri="file:///c.pt", sha256="ab" * 32)
    stage = tconv.train_job(_train_request(init_checkpoint=init), "cpu")
    warm = tconv.train_job(_train_request(init_checkpoint=init, warm_start=True), "cpu")
    assert warm.warm_start and not stage.warm_start and len({a.fingerprint(), stage.fingerprint(),
                                                              warm.fingerprint()}) == 3


def test_train_messages_round_trip():
    report = EpochReport(3, 1.25, {"ndcg@20": 0.5}, 2.0, 2, False)
    assert tconv.report_from_message(tconv.progress_response(report).progress) == report
    outcome = tconv.TrainOutcome("j", BlobRef("s3://b/c.pt", "cd" * 32), {"ndcg@10": 0.1}, {"ndcg@20": 0.2}, 4, 9,
                                 "patience", 10.0, 1.1, 300.0, VERSION, reused=True)
    for kept, inserted in ((None, 0), (False, 0), (True, 7)):  # unset, and a stage that validation dropped
        sent = dataclasses.replace(outcome, finetune_kept=kept, insertion_sequences=inserted)
        back = tconv.outcome_from_message(tconv.result_response(sent).result)
        assert back == sent and back.reused and back.finetune_kept is kept
        assert tconv.outcome_from_json(tconv.outcome_to_json(sent)) == sent


def test_generate_job_validation():
    base = dict(checkpoint=common_pb2.BlobRef(uri="file:///c"), dataset=common_pb2.DatasetRef(uri="file:///d",
                                                                                              version=VERSION))
    job = gconv.generate_job(generator_pb2.GenerateRequest(**base))
    assert job.shard == (0, 1) and job.config == GenerationConfig()
    shard = generator_pb2.Shard(index=2, count=3)
    assert gconv.generate_job(generator_pb2.GenerateRequest(**base, shard=shard)).shard == (2, 3)
    for request, match in [
        (generator_pb2.GenerateRequest(**base, shard=generator_pb2.Shard(index=3, count=3)), "shard.index"),
        (generator_pb2.GenerateRequest(**base, shard=generator_pb2.Shard(index=1)), "shard.index"),
        (generator_pb2.GenerateRequest(**base, output_key="../escape"), "'..'"),
        (generator_pb2.GenerateRequest(**{**base, "checkpoint": common_pb2.BlobRef(uri="file:///c", sha256="xyz")}),
         "checkpoint.sha256"),
    ]:
        with pytest.raises(ValueError, match=match):
            gconv.generate_job(request)


def test_batches_round_trip_and_split():
    seqs = [np.arange(1, n + 1) for n in (3, 5, 4, 6)]
    batch = GeneratedBatch(np.array([7, 9, 12, 30]), seqs, GenerationStats(rows=8, emitted=4))
    whole = list(gconv.batch_responses(batch, max_items=1000))
    parts = list(gconv.batch_responses(batch, max_items=8))
    assert len(whole) == 1 and [len(p.batch.row_ids) for p in parts] == [2, 1, 1]
    for messages in (whole, parts):
        back = [gconv.batch_from_message(m.batch) for m in messages]
        assert np.concatenate([b.row_ids for b in back]).tolist() == [7, 9, 12, 30]
        assert [s.tolist() for b in back for s in b.sequences] == [s.tolist() for s in seqs]
        assert all(b.stats == batch.stats for b in back)
    assert list(gconv.batch_responses(GeneratedBatch(np.zeros(0, np.int64), [], GenerationStats()), 10)) == []


def test_summary_round_trip():
    summary = gconv.ShardSummary(GenerationStats(rows=4, accepted_steps=9), BlobRef("file:///r", "ef" * 32), 1.5, "cpu")
    assert gconv.summary_from_message(gconv.summary_response(summary).summary) == summary
    bare = dataclasses.replace(summary, result=None)
    assert gconv.summary_from_message(gconv.summary_response(bare).summary) == bare
