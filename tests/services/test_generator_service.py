"""The generator service against a real server: streaming equals in-process generation, shards union
to the single run, the cache loads once, cancellation and deadlines stop the work, bad input is
answered with the right status."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass

import grpc
import pytest
import torch
from service_helpers import free_ports, running

from rsir.checkpoint import load_checkpoint
from rsir.config import GenerationConfig
from rsir.generation import generate, merge_generated
from rsir.synthetic import synthetic_dataset
from rsir_api.v1 import generator_pb2, generator_pb2_grpc
from services.common.artifacts import BlobRef, DatasetRef, publish_dataset
from services.common.client import RetryPolicy
from services.common.convert import dataset_ref_to_message
from services.common.healthcheck import health_status
from services.common.storage import LocalStore
from services.generator import convert
from services.generator.client import GeneratorClient
from services.generator.results import read_result
from services.generator.servicer import SERVICE_NAME, GeneratorServicer

CPU = torch.device("cpu")
CONFIG = GenerationConfig(tau=5, p=0.5, m=2, max_len=12)
LONG = GenerationConfig(tau=float("inf"), p=0.5, m=20, max_len=20, batch_rows=20)  # hundreds of small chunks


def as_dict(batches) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for batch in batches:
        for row, seq in zip(batch.row_ids, batch.sequences, strict=True):
            assert int(row) not in out
            out[int(row)] = seq.tolist()
    return out


@dataclass
class Env:
    store: LocalStore
    checkpoint: BlobRef
    dataset: DatasetRef
    servicer: GeneratorServicer
    client: GeneratorClient
    address: str


@pytest.fixture(scope="module")
def env(tmp_path_factory, teacher):
    """A local store holding the teacher and its dataset, and a running generator."""
    store = LocalStore(tmp_path_factory.mktemp("gen-store"))
    checkpoint = BlobRef(store.put("checkpoints/teacher.pt", teacher.checkpoint).uri)
    dataset = publish_dataset(store, teacher.dataset)
    servicer = GeneratorServicer(store, device=CPU, max_items_per_message=200)
    with running(servicer) as server, GeneratorClient(f"127.0.0.1:{server.port}") as client:
        yield Env(store, checkpoint, dataset, servicer, client, f"127.0.0.1:{server.port}")


@pytest.fixture(scope="module")
def model(teacher):
    return load_checkpoint(teacher.checkpoint)[0]


def test_stream_equals_in_process_generation(env, teacher, model):
    stream = env.client.generate(env.checkpoint, env.dataset, CONFIG, timeout=60)
    batches = list(stream)
    expected = list(generate(model, teacher.dataset, CONFIG))
    assert as_dict(batches) == as_dict(expected) and len(as_dict(batches)) > 50
    assert stream.summary.stats == expected[-1].stats and stream.summary.device == "cpu"
    assert stream.summary.result is None
    assert max(len(s) for b in batches for s in b.sequences) <= CONFIG.max_len
    assert all(sum(len(s) for s in b.sequences) <= 200 or len(b.sequences) == 1 for b in batches)  # split


def test_shards_from_two_replicas_union_to_the_single_run(env, teacher, model):
    other = GeneratorServicer(env.store, device=CPU)
    with running(other) as server, GeneratorClient(f"127.0.0.1:{server.port}") as second:
        parts = [(env.client, second)[i % 2].generate(env.checkpoint, env.dataset, CONFIG, shard=(i, 3)).collect()
                 for i in range(3)]
    single = list(generate(model, teacher.dataset, CONFIG))
    union = [b for batches, _ in parts for b in batches]
    assert as_dict(union) == as_dict(single)
    assert sum(summary.stats.rows for _, summary in parts) == single[-1].stats.rows
    merged, _ = merge_generated(teacher.dataset, union)
    assert merged.version == merge_generated(teacher.dataset, single)[0].version


def test_checkpoints_are_cached(env):
    before = env.servicer.models.cache.misses
    for shard in range(3):
        env.client.generate(env.checkpoint, env.dataset, CONFIG, shard=(shard, 8)).collect()
    assert env.servicer.models.cache.misses == before and env.servicer.models.cache.hits >= 3
    assert len(env.servicer.models.cache) == 1


def test_output_key_stores_the_whole_shard(env):
    stream = env.client.generate(env.checkpoint, env.dataset, CONFIG, shard=(1, 2), output_key="generated/s1.npz")
    batches, summary = stream.collect()
    assert summary.result is not None and summary.result.uri == env.store.uri("generated/s1.npz")
    stored, meta = read_result(env.store.get_uri(summary.result.uri, summary.result.sha256))
    assert as_dict([stored]) == as_dict(batches) and stored.stats == summary.stats
    assert meta == {"checkpoint": env.checkpoint.uri, "dataset_version": env.dataset.version, "shard": [1, 2]}


def test_cancel_mid_stream_stops_the_work(env):
    before = env.servicer.activity.snapshot()["cancelled"]
    stream = env.client.generate(env.checkpoint, env.dataset, LONG, output_key="generated/cancelled.npz")
    iterator = iter(stream)
    first = next(iterator)
    assert len(first.sequences) > 0
    stream.cancel()
    with pytest.raises(grpc.RpcError) as err:
        list(iterator)
    assert err.value.code() == grpc.StatusCode.CANCELLED
    assert env.servicer.activity.wait_idle(5.0), "generation kept running after the cancel"
    assert env.servicer.activity.snapshot()["cancelled"] == before + 1
    assert not env.store.exists("generated/cancelled.npz")


def test_deadline_stops_the_work(env):
    env.client.generate(env.checkpoint, env.dataset, CONFIG, shard=(0, 50)).collect()  # the deadline hits generation
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        env.client.generate(env.checkpoint, env.dataset, LONG, timeout=0.3).collect()
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert env.servicer.activity.wait_idle(5.0) and time.monotonic() - start < 10


@pytest.fixture(scope="module")
def bad(env, teacher):
    """Stored artifacts that are each wrong in one way."""
    store = env.store
    payload = torch.load(io.BytesIO(teacher.checkpoint), weights_only=True)
    payload["model_config"]["name"] = payload["model_name"] = "bogus"
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    store.put("bad/unknown-model.pt", buffer.getvalue())
    store.put("bad/garbage.pt", b"not a checkpoint at all")
    store.put("bad/truncated.pt", teacher.checkpoint[: len(teacher.checkpoint) // 2])
    store.put("bad/tampered.pt", teacher.checkpoint)
    path = store.root / "bad/tampered.pt"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF
    path.write_bytes(bytes(data))  # through the link: the recorded sha256 no longer matches
    other = synthetic_dataset(num_users=50, num_items=70, num_clusters=4, seed=1)
    return publish_dataset(store, other)


def _set(**fields):
    def change(request, env, other):
        for name, value in fields.items():
            setattr(request.config, name, value)
    return change


def _checkpoint(key: str, sha: str = ""):
    def change(request, env, other):
        request.checkpoint.uri, request.checkpoint.sha256 = env.store.uri(key), sha
    return change


BAD_INPUT = {  # case: (change to a good request, status, words the message must contain)
    "tau=0": (_set(tau=0.0), grpc.StatusCode.INVALID_ARGUMENT, "config.tau: must be > 0"),
    "tau<0": (_set(tau=-3.0), grpc.StatusCode.INVALID_ARGUMENT, "config.tau: must be > 0"),
    "tau=nan": (_set(tau=float("nan")), grpc.StatusCode.INVALID_ARGUMENT, "config.tau"),
    "p>1": (_set(p=1.5), grpc.StatusCode.INVALID_ARGUMENT, "config.p: must be in [0, 1]"),
    "p<0": (_set(p=-0.1), grpc.StatusCode.INVALID_ARGUMENT, "config.p: must be in [0, 1]"),
    "m=0": (_set(m=0), grpc.StatusCode.INVALID_ARGUMENT, "config.m: must be in [1, 1000]"),
    "m<0": (_set(m=-2), grpc.StatusCode.INVALID_ARGUMENT, "config.m"),
    "max_len": (_set(max_len=40), grpc.StatusCode.INVALID_ARGUMENT, "exceeds the model's 20"),
    "shard": (lambda r, e, o: r.shard.MergeFrom(generator_pb2.Shard(index=4, count=4)),
              grpc.StatusCode.INVALID_ARGUMENT, "shard.index: 4 is outside [0, 4)"),
    "foreign-uri": (lambda r, e, o: setattr(r.checkpoint, "uri", "s3://elsewhere/teacher.pt"),
                    grpc.StatusCode.INVALID_ARGUMENT, "not in this service's storage"),
    "output-key": (lambda r, e, o: setattr(r, "output_key", "generated/../../etc/x"),
                   grpc.StatusCode.INVALID_ARGUMENT, "'..'"),
    "no-version": (lambda r, e, o: setattr(r.dataset, "version", ""),
                   grpc.StatusCode.INVALID_ARGUMENT, "dataset.version: must be the dataset's sha256"),
    "missing-checkpoint": (_checkpoint("checkpoints/none.pt"), grpc.StatusCode.NOT_FOUND, "no checkpoint there"),
    "missing-dataset": (lambda r, e, o: setattr(r.dataset, "uri", e.store.uri("datasets/none.npz")),
                        grpc.StatusCode.NOT_FOUND, "no such blob"),
    "garbage-checkpoint": (_checkpoint("bad/garbage.pt"), grpc.StatusCode.FAILED_PRECONDITION,
                           "not a readable checkpoint"),
    "truncated-checkpoint": (_checkpoint("bad/truncated.pt"), grpc.StatusCode.FAILED_PRECONDITION,
                             "not a readable checkpoint"),
    "tampered-checkpoint": (_checkpoint("bad/tampered.pt"), grpc.StatusCode.FAILED_PRECONDITION,
                            "corrupt or was modified"),
    "unknown-model": (_checkpoint("bad/unknown-model.pt"), grpc.StatusCode.FAILED_PRECONDITION,
                      "unknown model 'bogus'"),
    "pinned-sha": (_checkpoint("checkpoints/teacher.pt", "0" * 64), grpc.StatusCode.FAILED_PRECONDITION,
                   "the request expects"),
    "dataset-hash": (lambda r, e, o: setattr(r.dataset, "version", o.version), grpc.StatusCode.FAILED_PRECONDITION,
                     "does not match"),
    "catalogue": (lambda r, e, o: r.dataset.MergeFrom(dataset_ref_to_message(o)), grpc.StatusCode.FAILED_PRECONDITION,
                  "catalogue of 60 items but dataset"),
}


@pytest.mark.parametrize("case", BAD_INPUT)
def test_bad_input(env, bad, case):
    change, code, needle = BAD_INPUT[case]
    request = convert.generate_request(env.checkpoint, env.dataset, CONFIG)
    change(request, env, bad)
    with pytest.raises(grpc.RpcError) as err:
        list(generator_pb2_grpc.GeneratorStub(env.client.channel).Generate(request, timeout=30))
    assert err.value.code() == code, err.value.details()
    assert needle in err.value.details()
    assert health_status(env.address, SERVICE_NAME) == "SERVING"  # nothing crashed


def test_client_retries_until_the_server_is_up(tmp_path, teacher, model):
    store = LocalStore(tmp_path)
    checkpoint = BlobRef(store.put("c.pt", teacher.checkpoint).uri)
    dataset = publish_dataset(store, teacher.dataset)
    port = free_ports(1)[0]
    client = GeneratorClient(f"127.0.0.1:{port}", policy=RetryPolicy(attempts=8, initial_backoff=0.2, max_backoff=0.5))
    servicer = GeneratorServicer(store, device=CPU)
    started, done = threading.Event(), threading.Event()

    def late_server():
        with running(servicer, port=port):
            started.set()
            done.wait(30)

    thread = threading.Thread(target=late_server)
    timer = threading.Timer(0.8, thread.start)
    timer.start()
    try:
        batches, summary = client.generate(checkpoint, dataset, CONFIG, shard=(0, 20), timeout=30).collect()
        assert started.is_set() and summary.stats.rows > 0
        assert as_dict(batches) == as_dict(generate(model, teacher.dataset, CONFIG, shard=(0, 20)))
    finally:
        done.set()
        timer.join()
        thread.join()
        client.close()
    dead = GeneratorClient(f"127.0.0.1:{free_ports(1)[0]}", policy=RetryPolicy(attempts=2, initial_backoff=0.05))
    with pytest.raises(grpc.RpcError) as err:
        dead.generate(checkpoint, dataset, CONFIG).collect()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    dead.close()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_generates_on_cuda(env, teacher):
    cuda = torch.device("cuda")
    servicer = GeneratorServicer(env.store, device=cuda)
    model = load_checkpoint(teacher.checkpoint, cuda)[0]
    with running(servicer) as server, GeneratorClient(f"127.0.0.1:{server.port}") as client:
        parts = [client.generate(env.checkpoint, env.dataset, CONFIG, shard=(i, 2)).collect() for i in range(2)]
    assert all(summary.device.startswith("cuda") for _, summary in parts)
    union = [b for batches, _ in parts for b in batches]
    assert as_dict(union) == as_dict(generate(model, teacher.dataset, CONFIG, device=cuda))
