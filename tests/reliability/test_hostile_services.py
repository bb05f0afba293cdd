"""Hostile but valid requests against real trainer and generator servers on loopback: requests
that would exhaust memory are refused (or, for generation, decoded in chunks that fit) within the
service's memory budget, measured as the server process's peak resident set; a device the machine
lacks is refused naming those it has; a cancel stops training within a batch and publishes
nothing; cancelled calls are logged and leave no thread setting behind; reflection answers ``v1``."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import torch
from grpc_reflection.v1alpha import reflection_pb2
from service_helpers import free_ports, running, service_env

from rsir.checkpoint import checkpoint_bytes
from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from rsir.synthetic import synthetic_dataset
from rsir.training import train
from rsir_api.v1 import trainer_pb2_grpc
from services.common.artifacts import BlobRef, DatasetRef, publish_dataset
from services.common.client import RetryPolicy, describe, open_channel
from services.common.healthcheck import health_status
from services.common.storage import LocalStore
from services.generator.client import GeneratorClient
from services.generator.servicer import GeneratorServicer
from services.trainer import convert
from services.trainer.client import TrainerClient
from services.trainer.servicer import TrainerServicer

ROOT = Path(__file__).resolve().parents[2]
BUDGET_MB = 1024
MODEL = ModelConfig(name="sasrec", dim=16, layers=1, heads=1, max_len=20, dropout=0.0)
NO_RETRY = RetryPolicy(attempts=1)


@dataclass(frozen=True)
class Served:
    address: str
    pid: int
    log: Path


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> LocalStore:
    return LocalStore(tmp_path_factory.mktemp("hostile-services") / "store")


@pytest.fixture(scope="module")
def big(store) -> DatasetRef:
    """5,000 items: a full-softmax batch of every user at max_len 20 needs gigabytes of logits."""
    return publish_dataset(store, synthetic_dataset(num_users=2000, num_items=5000, num_clusters=8, seed=3))


@pytest.fixture(scope="module")
def teacher(store) -> tuple[BlobRef, DatasetRef]:
    data = synthetic_dataset(num_users=300, num_items=60, num_clusters=4, seed=5)
    result = train(data, MODEL, TrainConfig(max_epochs=1, batch_size=128, lr=1e-2, device="cpu"), progress=False)
    checkpoint = store.put("checkpoints/teacher.pt", checkpoint_bytes(result.model, dataset_version=data.version))
    return BlobRef(checkpoint.uri), publish_dataset(store, data)


def _serve(module: str, prefix: str, store: LocalStore, tmp: Path) -> Iterator[Served]:
    port = free_ports(1)[0]
    log = tmp / f"{module}.log"
    env = service_env(**{f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(port), f"{prefix}DEVICE": "cpu",
                         f"{prefix}STORAGE_URL": str(store.root), f"{prefix}MEMORY_BUDGET_MB": str(BUDGET_MB)})
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    address, service = f"127.0.0.1:{port}", f"rsir.api.v1.{prefix.title().rstrip('_')}"
    try:
        deadline = time.monotonic() + 90
        while health_status(address, service, timeout=1) != "SERVING":
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        yield Served(address, proc.pid, log)
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def trainer_process(store, tmp_path_factory) -> Iterator[Served]:
    yield from _serve("services.trainer", "TRAINER_", store, tmp_path_factory.mktemp("trainer"))


@pytest.fixture(scope="module")
def generator_process(store, tmp_path_factory) -> Iterator[Served]:
    yield from _serve("services.generator", "GENERATOR_", store, tmp_path_factory.mktemp("generator"))


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident set so far (``VmHWM``)."""
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def test_a_training_batch_that_cannot_fit_is_refused_naming_the_budget(trainer_process, big):
    with TrainerClient(trainer_process.address, policy=NO_RETRY) as client:
        info = client.describe()
        assert info.memory_budget_bytes == BUDGET_MB * 2**20 and "cpu" in info.devices
        with pytest.raises(grpc.RpcError) as err:
            client.train("huge-batch", big, MODEL, TrainConfig(loss="ce", batch_size=1_000_000, max_epochs=1),
                         timeout=60)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
    assert "TRAINER_MEMORY_BUDGET_MB = 1,024 MB" in err.value.details() and "loss" in err.value.details()
    print(f"trainer peak RSS {peak_rss_mb(trainer_process.pid):.0f} MB; {err.value.details()}")
    assert peak_rss_mb(trainer_process.pid) < BUDGET_MB
    assert health_status(trainer_process.address, "rsir.api.v1.Trainer") == "SERVING"


@pytest.mark.parametrize("device", ["cuda:99", *([] if torch.cuda.is_available() else ["cuda"])])
def test_a_device_the_trainer_lacks_is_refused_naming_its_devices(trainer_process, big, device):
    with TrainerClient(trainer_process.address, policy=NO_RETRY) as client, pytest.raises(grpc.RpcError) as err:
        client.train(f"device-{device.replace(':', '-')}", big, MODEL, TrainConfig(device=device, max_epochs=1),
                     timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert f"{device!r} does not exist here" in err.value.details() and "cpu" in err.value.details()


def test_generation_unbounded_by_the_request_stays_within_the_budget(generator_process, teacher):
    """τ = ∞, m = 1000 and 10⁷ rows per chunk: the chunk is lowered to fit, the stream completes."""
    checkpoint, dataset = teacher
    config = GenerationConfig(tau=float("inf"), m=1000, max_len=20, batch_rows=10_000_000)
    with GeneratorClient(generator_process.address, policy=NO_RETRY) as client:
        assert describe(client.channel, None).memory_budget_bytes == BUDGET_MB * 2**20
        batches, summary = client.generate(checkpoint, dataset, config, shard=(0, 4), timeout=300).collect()
    assert summary.stats.rows >= 70 * 1000 and sum(len(b.sequences) for b in batches) == summary.stats.emitted
    print(f"generator peak RSS {peak_rss_mb(generator_process.pid):.0f} MB for {summary.stats.rows} rows "
          f"in {summary.seconds:.1f} s")
    assert peak_rss_mb(generator_process.pid) < BUDGET_MB
    assert "rows per chunk instead of 10000000" in generator_process.log.read_text()


@pytest.fixture
def trainer(store) -> Iterator[tuple[TrainerServicer, str]]:
    servicer = TrainerServicer(store, default_device="cpu")
    with running(servicer) as server:
        yield servicer, f"127.0.0.1:{server.port}"


def test_a_cancel_stops_training_within_a_batch(trainer, big):
    servicer, address = trainer
    endless = TrainConfig(max_epochs=10_000, patience=10_000, batch_size=64, device="cpu")
    with open_channel(address) as channel:
        call = trainer_pb2_grpc.TrainerStub(channel).Train(convert.train_request("endless", big, MODEL, endless))
        assert next(call).progress.epoch == 1
        time.sleep(0.5)  # well inside epoch 2
        start = time.monotonic()
        call.cancel()
        assert servicer.activity.wait_idle(10.0)
    stopped = time.monotonic() - start
    print(f"training stopped {stopped:.2f} s after the cancel")
    assert stopped < 2.0
    assert not servicer.store.exists("checkpoints/endless.pt")


def test_a_cancel_after_the_last_epoch_publishes_nothing(trainer, big):
    """Cancelled while the test split is ranked, the job stores no checkpoint, ranks or record."""
    servicer, address = trainer
    one = TrainConfig(max_epochs=1, batch_size=2000, eval_batch_size=8, device="cpu")
    with open_channel(address) as channel:
        call = trainer_pb2_grpc.TrainerStub(channel).Train(convert.train_request("last-epoch", big, MODEL, one))
        assert next(call).progress.epoch == 1  # the last epoch: the test evaluation starts now
        call.cancel()
        assert servicer.activity.wait_idle(30.0)
    assert servicer.activity.snapshot()["cancelled"] == 1
    for key in ("checkpoints/last-epoch.pt", "ranks/last-epoch.npy", "jobs/trainer/last-epoch.json"):
        assert not servicer.store.exists(key), key


def test_cancelled_generations_are_logged_and_leave_no_thread_setting(store, teacher, caplog):
    checkpoint, dataset = teacher
    threads = torch.get_num_threads()
    servicer = GeneratorServicer(store, device=torch.device("cpu"), max_items_per_message=50, threads=2)
    config = GenerationConfig(tau=float("inf"), m=50, max_len=20, batch_rows=100)  # many chunks, 2 workers
    caplog.set_level(logging.INFO, logger="services.generator.servicer")
    with running(servicer) as server, GeneratorClient(f"127.0.0.1:{server.port}", policy=NO_RETRY) as client:
        for _ in range(4):
            stream = client.generate(checkpoint, dataset, config)
            next(iter(stream))
            stream.cancel()
            assert servicer.activity.wait_idle(10.0)
        _, summary = client.generate(checkpoint, dataset, config, timeout=120).collect()
    assert summary.stats.rows >= 280 * 50
    assert caplog.text.count("Generate cancelled") == 4
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert torch.get_num_threads() == threads and seen == [threads]


def test_reflection_answers_v1_and_v1alpha(trainer):
    _, address = trainer
    for version in ("v1", "v1alpha"):
        with open_channel(address) as channel:
            method = channel.stream_stream(f"/grpc.reflection.{version}.ServerReflection/ServerReflectionInfo",
                                           request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                                           response_deserializer=reflection_pb2.ServerReflectionResponse.FromString)
            requests = [reflection_pb2.ServerReflectionRequest(list_services=""),
                        reflection_pb2.ServerReflectionRequest(file_containing_symbol="rsir.api.v1.Trainer")]
            listed, found = list(method(iter(requests), timeout=10))
        names = {s.name for s in listed.list_services_response.service}
        assert {"rsir.api.v1.Trainer", "rsir.api.v1.Info", "grpc.reflection.v1.ServerReflection"} <= names
        assert found.file_descriptor_response.file_descriptor_proto
