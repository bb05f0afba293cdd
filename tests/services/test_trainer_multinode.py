"""The trainer service across two nodes on loopback: the service is node 0 and a real
``python -m services.trainer.peer`` process node 1, one process each, meeting at a static torchrun
rendezvous. A job follows the one-process epochs and publishes a checkpoint that loads; the peer
outlives a cancelled job and takes the next one, which continues the first job's checkpoint as one
process would; without a peer a job fails FAILED_PRECONDITION, naming the rendezvous, once its timeout has
passed; the settings refuse a rendezvous that cannot work."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
from processes import wait_for
from pydantic import ValidationError
from service_helpers import free_ports, running, service_env
from trainer_helpers import MODEL, TRAIN, serve, small_dataset

from rsir.checkpoint import load_checkpoint
from rsir.config import TrainConfig
from rsir.training import EpochReport
from rsir_api.v1 import trainer_pb2_grpc
from services.common.artifacts import publish_dataset
from services.common.client import RetryPolicy
from services.testing.stack import stop
from services.trainer import convert
from services.trainer.client import TrainerClient
from services.trainer.launch import fit
from services.trainer.rendezvous import Rendezvous
from services.trainer.settings import TrainerSettings

ROOT = Path(__file__).resolve().parents[2]
JOIN_S = 60  # node 0's wait for the peer: a broken peer fails the test after this, never hangs it


@pytest.fixture
def peer(tmp_path) -> Iterator[tuple[Rendezvous, subprocess.Popen, Path]]:
    """Node 1, a real peer process, waiting at a free loopback port; stopped by its PID (SIGTERM)."""
    rendezvous = Rendezvous(2, "127.0.0.1", free_ports(1)[0], JOIN_S)
    env = service_env(TRAINER_NNODES="2", TRAINER_NODE_RANK="1", TRAINER_RDZV_HOST=rendezvous.host,
                      TRAINER_RDZV_PORT=str(rendezvous.port), TRAINER_RDZV_TIMEOUT_S="30", TRAINER_DEVICE="cpu",
                      TRAINER_NPROC="1", TRAINER_TORCH_THREADS="1")
    log = tmp_path / "peer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "services.trainer.peer"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        yield rendezvous, proc, log
    finally:
        stop(proc)
    assert proc.returncode == 0, log.read_text()[-3000:]  # SIGTERM stops the loop cleanly


def _losses(progress: list[EpochReport]) -> np.ndarray:
    return np.array([p.loss for p in progress])


def test_two_nodes_follow_one_process_and_the_peer_outlives_a_cancel(tmp_path, peer):
    rendezvous, proc, log = peer
    data = small_dataset()
    store, servicer = serve(tmp_path, 1)
    with running(servicer) as server, TrainerClient(f"127.0.0.1:{server.port}") as client:
        one: list[EpochReport] = []
        alone = client.train("one", publish_dataset(store, data), MODEL, TRAIN, on_progress=one.append, timeout=120)

    store, servicer = serve(tmp_path, 1, rendezvous)
    ref = publish_dataset(store, data)
    endless = TrainConfig(max_epochs=10_000, patience=10_000, batch_size=16, device="cpu")
    with running(servicer) as server, TrainerClient(f"127.0.0.1:{server.port}") as client:
        two: list[EpochReport] = []
        outcome = client.train("two-nodes", ref, MODEL, TRAIN, on_progress=two.append, timeout=180)
        assert [p.epoch for p in two] == [1, 2] and outcome.stopped_by == "max_epochs"
        assert np.abs(_losses(two) - _losses(one)).max() < 1e-5
        model, info = load_checkpoint(store.get_uri(outcome.checkpoint.uri, outcome.checkpoint.sha256))
        assert info.model_config == MODEL and info.dataset_version == data.version
        assert outcome.test == pytest.approx(alone.test, abs=1e-4)

        call = trainer_pb2_grpc.TrainerStub(client.channel).Train(
            convert.train_request("endless", ref, MODEL, endless), timeout=180)
        assert next(call).progress.epoch == 1
        call.cancel()
        assert servicer.activity.wait_idle(40.0), "the training processes outlived the cancel"

        continued: list[EpochReport] = []  # the checkpoint to continue reaches the peer too
        client.train("continued", ref, MODEL, TRAIN, init=outcome.checkpoint, on_progress=continued.append,
                     timeout=180)
    here: list[EpochReport] = []
    fit(data, MODEL, TRAIN, (model, info.metrics), here.append)
    assert [p.epoch for p in continued] == [p.epoch for p in here] and continued[0].epoch == 3
    assert np.abs(_losses(continued) - _losses(here)).max() < 1e-5
    assert not store.exists("checkpoints/endless.pt")
    wait_for(lambda: log.read_text().count("job done") == 2, 60, "the peer to finish its second job")
    assert proc.poll() is None


def test_a_job_without_its_peer_fails_after_the_rendezvous_timeout_naming_it(tmp_path):
    rendezvous = Rendezvous(2, "127.0.0.1", free_ports(1)[0], timeout_s=5)
    store, servicer = serve(tmp_path, 1, rendezvous)
    ref = publish_dataset(store, small_dataset())
    with running(servicer) as server, TrainerClient(f"127.0.0.1:{server.port}",
                                                    policy=RetryPolicy(attempts=1)) as client:
        start = time.monotonic()
        with pytest.raises(grpc.RpcError) as failed:
            client.train("alone", ref, MODEL, TRAIN, timeout=120)
        elapsed = time.monotonic() - start
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    details = failed.value.details()
    assert rendezvous.address in details and "node rank 1" in details and "Traceback" not in details
    assert rendezvous.timeout_s <= elapsed < rendezvous.timeout_s + 45
    assert not store.exists("checkpoints/alone.pt")


@pytest.mark.parametrize("values", [{"nnodes": 2}, {"nnodes": 2, "rdzv_host": "node0", "node_rank": 2},
                                    {"nnodes": 2, "rdzv_host": "node0", "max_concurrent_calls": 2},
                                    {"nnodes": 2, "rdzv_host": "node0:29400"}])
def test_settings_refuse_a_rendezvous_that_cannot_work(values):
    with pytest.raises(ValidationError):
        TrainerSettings(**values)
    assert TrainerSettings(nnodes=2, rdzv_host="node0", node_rank=1).rendezvous() == Rendezvous(2, "node0", 29400, 120)
