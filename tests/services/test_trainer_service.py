"""The trainer service against real servers and real S3 storage (SeaweedFS): the full train →
publish → generate round trip, idempotent job ids, cancellation, bad input."""

from __future__ import annotations

from dataclasses import dataclass, replace

import grpc
import numpy as np
import pytest
import torch
from service_helpers import running

from rsir.checkpoint import load_checkpoint
from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from rsir.evaluation import METRICS
from rsir.generation import generate
from rsir_api.v1 import trainer_pb2_grpc
from services.common.artifacts import DatasetRef, publish_dataset
from services.common.healthcheck import health_status
from services.common.storage import ObjectStore
from services.generator.client import GeneratorClient
from services.generator.servicer import GeneratorServicer
from services.trainer import convert
from services.trainer.client import TrainerClient
from services.trainer.servicer import SERVICE_NAME, TrainerServicer

MODEL = ModelConfig(name="sasrec", dim=16, layers=1, heads=1, max_len=20, dropout=0.0)
TRAIN = TrainConfig(max_epochs=2, batch_size=128, lr=1e-2, device="cpu")
ENDLESS = TrainConfig(max_epochs=10_000, patience=10_000, batch_size=16, lr=1e-3, device="cpu")


@dataclass
class Env:
    store: ObjectStore
    dataset: DatasetRef
    trainer: TrainerServicer
    client: TrainerClient
    address: str


@pytest.fixture(scope="module")
def env(s3, teacher):
    store = s3.store("trainer-tests")
    servicer = TrainerServicer(store, default_device="cpu")
    with running(servicer) as server, TrainerClient(f"127.0.0.1:{server.port}") as client:
        yield Env(store, publish_dataset(store, teacher.dataset), servicer, client, f"127.0.0.1:{server.port}")


def test_train_publish_generate_round_trip(env, teacher):
    progress = []
    outcome = env.client.train("round-trip", env.dataset, MODEL, TRAIN, on_progress=progress.append, timeout=120)
    assert [p.epoch for p in progress] == [1, 2] and all("ndcg@20" in p.valid for p in progress)
    assert not outcome.reused and outcome.epochs == 2 and outcome.stopped_by == "max_epochs"
    assert outcome.checkpoint.uri == env.store.uri("checkpoints/round-trip.pt")
    assert outcome.checkpoint.uri.startswith("s3://") and set(outcome.test) == set(METRICS)
    assert outcome.dataset_version == env.dataset.version == teacher.dataset.version
    model, info = load_checkpoint(env.store.get_uri(outcome.checkpoint.uri, outcome.checkpoint.sha256))
    assert info.dataset_version == teacher.dataset.version and info.model_config == MODEL
    config = GenerationConfig(tau=5, p=0.5, m=2, max_len=12)
    with running(GeneratorServicer(env.store, device=torch.device("cpu"))) as server, \
            GeneratorClient(f"127.0.0.1:{server.port}") as generator:
        batches, summary = generator.generate(outcome.checkpoint, env.dataset, config, timeout=60).collect()
    expected = list(generate(model, teacher.dataset, config))
    assert [(r, s.tolist()) for b in batches for r, s in zip(b.row_ids, b.sequences, strict=True)] == \
        [(r, s.tolist()) for b in expected for r, s in zip(b.row_ids, b.sequences, strict=True)]
    assert summary.stats == expected[-1].stats and summary.stats.emitted > 0


def test_the_real_data_stage_streams_on_and_publishes_the_better_stage(env, teacher):
    rng = np.random.default_rng(0)
    noise = [rng.integers(1, teacher.dataset.num_items + 1, size=6) for _ in range(30)]
    augmented = publish_dataset(env.store, teacher.dataset.with_synthetic(noise))
    progress = []
    outcome = env.client.train("two-stage", augmented, MODEL, replace(TRAIN, finetune_real=True, insertion_ratio=1.0),
                               on_progress=progress.append, timeout=120)
    assert [p.epoch for p in progress] == [1, 2, 3, 4] and outcome.epochs == 4
    assert outcome.valid["ndcg@20"] == max(p.valid["ndcg@20"] for p in progress)
    assert progress[outcome.best_epoch - 1].valid == outcome.valid
    # the reply says what the model trained on and which stage it ends with
    assert outcome.insertion_sequences == len(noise) and outcome.finetune_kept == (outcome.best_epoch > 2)
    plain = env.client.train("one-stage", env.dataset, MODEL, TRAIN, timeout=120)
    assert plain.finetune_kept is None and plain.insertion_sequences == 0


def test_a_warm_start_trains_the_whole_job_from_the_checkpoint(env, teacher):
    base = env.client.train("warm-base", env.dataset, MODEL, TRAIN, timeout=120)
    noise = [np.arange(1, 7) + i for i in range(20)]
    augmented = publish_dataset(env.store, teacher.dataset.with_synthetic(noise))
    progress = []
    still = replace(TRAIN, lr=1e-12, finetune_real=True)  # the weights barely move: epoch 1 ranks as the base
    warm = env.client.train("warm-student", augmented, MODEL, still, init=base.checkpoint, warm_start=True,
                            on_progress=progress.append, timeout=120)
    assert len(progress) == warm.epochs == 4 and warm.finetune_kept is not None  # both stages, not the second alone
    assert progress[0].valid["ndcg@20"] == pytest.approx(base.valid["ndcg@20"], abs=1e-6)


def test_repeated_job_id_returns_the_stored_result(env):
    first = env.client.train("once", env.dataset, MODEL, TRAIN, timeout=120)
    progress = []
    again = env.client.train("once", env.dataset, MODEL, TRAIN, on_progress=progress.append, timeout=10)
    assert again.reused and progress == [] and again == first
    assert env.trainer.activity.snapshot()["completed"] >= 2
    with pytest.raises(grpc.RpcError) as err:
        env.client.train("once", env.dataset, MODEL, TrainConfig(max_epochs=3, device="cpu"), timeout=10)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS and "use a new job id" in err.value.details()


def test_cancel_stops_training_within_a_batch_and_frees_the_slot(env):
    stub = trainer_pb2_grpc.TrainerStub(env.client.channel)
    call = stub.Train(convert.train_request("endless", env.dataset, MODEL, ENDLESS), timeout=60)
    assert next(call).progress.epoch == 1
    with pytest.raises(grpc.RpcError) as err:  # one training at a time (TRAINER_MAX_CONCURRENT_CALLS=1)
        env.client.train("second", env.dataset, MODEL, TRAIN, timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "busy" in err.value.details()
    before = env.trainer.activity.snapshot()["cancelled"]
    call.cancel()
    assert env.trainer.activity.wait_idle(5.0), "training kept running after the cancel"
    assert env.trainer.activity.snapshot()["cancelled"] == before + 1
    assert not env.store.exists("checkpoints/endless.pt") and not env.store.exists("jobs/trainer/endless.json")
    assert not env.client.train("second", env.dataset, MODEL, TRAIN, timeout=60).reused


@pytest.mark.parametrize(("change", "code", "needle"), [
    (dict(model=ModelConfig(name="bert4rec")), grpc.StatusCode.INVALID_ARGUMENT, "unknown model 'bert4rec'"),
    (dict(job_id="../../etc"), grpc.StatusCode.INVALID_ARGUMENT, "job_id"),
    (dict(dataset="missing"), grpc.StatusCode.NOT_FOUND, "no such blob"),
    (dict(dataset="foreign"), grpc.StatusCode.INVALID_ARGUMENT, "not in this service's storage"),
    (dict(dataset="wrong-version"), grpc.StatusCode.FAILED_PRECONDITION, "does not match"),
])
def test_bad_input(env, change, code, needle):
    args = {"job_id": "bad", "dataset": env.dataset, "model": MODEL, "train": TRAIN, **change}
    args["dataset"] = {"missing": DatasetRef(env.store.uri("datasets/none.npz"), env.dataset.version),
                       "foreign": DatasetRef("file:///etc/passwd", env.dataset.version),
                       "wrong-version": DatasetRef(env.dataset.uri, "0" * 64)}.get(args["dataset"], args["dataset"])
    with pytest.raises(grpc.RpcError) as err:
        env.client.train(args["job_id"], args["dataset"], args["model"], args["train"], timeout=30)
    assert err.value.code() == code, err.value.details()
    assert needle in err.value.details()
    assert health_status(env.address, SERVICE_NAME) == "SERVING"


def test_a_bad_value_is_refused_before_any_work(env):
    request = convert.train_request("neg-lr", env.dataset, MODEL, TRAIN)
    request.train.lr = -1.0
    with pytest.raises(grpc.RpcError) as err:
        list(trainer_pb2_grpc.TrainerStub(env.client.channel).Train(request, timeout=10))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "train.lr" in err.value.details()
