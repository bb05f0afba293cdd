"""The trainer service with ``nproc=2``: a job runs as two gloo processes under torchrun, streams
the same epochs as the one-process service, publishes rank 0's checkpoint and the workers' sharded
test ranks, and a cancelled job stops the process group and publishes nothing."""

from __future__ import annotations

import io

import grpc
import numpy as np
import pytest
from service_helpers import running
from trainer_helpers import MODEL, TRAIN, serve, small_dataset

from rsir.checkpoint import load_checkpoint
from rsir.config import TrainConfig
from rsir.evaluation import evaluate
from rsir.training import EpochReport
from rsir_api.v1 import trainer_pb2_grpc
from services.common.artifacts import publish_dataset
from services.trainer import convert
from services.trainer.client import TrainerClient


@pytest.fixture(scope="module")
def data():
    return small_dataset()


def test_two_process_job_streams_the_one_process_epochs_and_publishes_rank_zero(tmp_path, data):
    outcomes: dict[int, convert.TrainOutcome] = {}
    progress: dict[int, list[EpochReport]] = {}
    warm: dict[int, list[EpochReport]] = {}
    for nproc in (1, 2):
        store, servicer = serve(tmp_path, nproc)
        ref = publish_dataset(store, data)
        with running(servicer) as server, TrainerClient(f"127.0.0.1:{server.port}") as client:
            progress[nproc], warm[nproc] = [], []
            outcomes[nproc] = client.train("ddp", ref, MODEL, TRAIN, on_progress=progress[nproc].append, timeout=120)
            # the workers start a warm job from the checkpoint: its first epoch begins where "ddp" ended
            client.train("warm", ref, MODEL, TRAIN, init=outcomes[nproc].checkpoint, warm_start=True,
                         on_progress=warm[nproc].append, timeout=120)
        assert len(warm[nproc]) == 2 and warm[nproc][0].loss < progress[nproc][1].loss
    one, two = outcomes[1], outcomes[2]
    assert [p.epoch for p in progress[2]] == [1, 2] and two.epochs == 2 and two.stopped_by == "max_epochs"
    assert np.abs(np.array([p.loss for p in progress[2]]) - [p.loss for p in progress[1]]).max() < 1e-4
    assert two.test == pytest.approx(one.test, abs=1e-3)
    model, info = load_checkpoint(store.get_uri(two.checkpoint.uri, two.checkpoint.sha256))
    assert info.model_config == MODEL and info.dataset_version == data.version
    assert two.ranks is not None
    ranks = np.load(io.BytesIO(store.get_uri(two.ranks.uri, two.ranks.sha256)))
    assert np.array_equal(ranks, evaluate(model, data, "test", batch_size=TRAIN.eval_batch_size).ranks)


def test_a_cancelled_two_process_job_stops_and_publishes_nothing(tmp_path, data):
    store, servicer = serve(tmp_path, 2)
    ref = publish_dataset(store, data)
    endless = TrainConfig(max_epochs=10_000, patience=10_000, batch_size=16, device="cpu")
    with running(servicer) as server, TrainerClient(f"127.0.0.1:{server.port}") as client:
        call = trainer_pb2_grpc.TrainerStub(client.channel).Train(
            convert.train_request("endless", ref, MODEL, endless), timeout=120)
        assert next(call).progress.epoch == 1
        call.cancel()
        with pytest.raises(grpc.RpcError):
            next(call)
        assert servicer.activity.wait_idle(40.0), "the training processes outlived the cancel"
    assert not store.exists("checkpoints/endless.pt") and not store.exists("jobs/trainer/endless.json")
