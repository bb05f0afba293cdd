"""Hostile gRPC input against real trainer and generator servers on loopback: requests with fields
Hypothesis sets to hostile values (path traversal, foreign URIs, huge and negative numbers, NaN), raw
bytes in place of a request, and messages over the size limit. Every call ends with a clean status
(never INTERNAL or UNKNOWN, which would mean an unexpected exception), the servers stay SERVING with
no call stuck, and nothing is stored, inside the store or outside it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import torch
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_helpers import running

from rsir.checkpoint import checkpoint_bytes
from rsir.config import ModelConfig
from rsir.models import build_model
from rsir.synthetic import synthetic_dataset
from rsir_api.v1 import common_pb2, generator_pb2, trainer_pb2
from services.common.artifacts import publish_dataset
from services.common.grpc_server import Server
from services.common.healthcheck import health_status
from services.common.storage import LocalStore
from services.generator.servicer import GeneratorServicer
from services.trainer.servicer import TrainerServicer

CLEAN = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
         grpc.StatusCode.ALREADY_EXISTS}
HOSTILE_TEXT = ["", "../../../../etc/passwd", "..", "/etc/passwd", "file:///etc/passwd", "file:///../../etc/shadow",
                "s3://other-bucket/x", "checkpoints/../../x", "a/./b", "\x00", "%2e%2e%2fx", "sasrec",
                "cpu", "cuda:99", "ce", "random", "0" * 64, "g" * 64, "jobs/trainer/../../x"]
INT_BOUNDS = {FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
              FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1)}


def leaves(descriptor: Descriptor, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], FieldDescriptor]]:
    """Every scalar field of a message type, nested ones included, by its path of names."""
    found = []
    for f in descriptor.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            found += leaves(f.message_type, (*path, f.name))
        else:
            found.append(((*path, f.name), f))
    return found


def hostile(field: FieldDescriptor, texts: st.SearchStrategy[str]) -> st.SearchStrategy:
    """Values of the field's type at and beyond whatever a service accepts."""
    if field.type in INT_BOUNDS:
        low, high = INT_BOUNDS[field.type]
        return st.one_of(st.integers(max(low, -3), 3), st.sampled_from([low, high]), st.integers(low, high))
    if field.type == FieldDescriptor.TYPE_DOUBLE:
        return st.one_of(st.floats(allow_nan=True), st.sampled_from([0.0, -1.0, 1e308, 0.5]))
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    return texts


@st.composite
def mutations(draw: st.DrawFn, base: Message, texts: st.SearchStrategy[str]) -> Message:
    """``base`` with one to three of its fields (nested ones included) set to hostile values."""
    request = type(base)()
    request.CopyFrom(base)
    for path, field in draw(st.lists(st.sampled_from(leaves(base.DESCRIPTOR)), min_size=1, max_size=3,
                                     unique_by=lambda leaf: leaf[0])):
        target = request
        for name in path[:-1]:
            target = getattr(target, name)
        setattr(target, path[-1], draw(hostile(field, texts)))
    return request


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".tmp" not in p.parts}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> LocalStore:
    """A store with a dataset, a checkpoint for it and a corrupt one, so that requests get far."""
    store = LocalStore(tmp_path_factory.mktemp("hostile-grpc") / "store")
    data = synthetic_dataset(num_users=40, num_items=30, num_clusters=3, seed=3)
    publish_dataset(store, data)
    model = build_model(ModelConfig(name="gru", dim=8, max_len=20), data.num_items)
    store.put("checkpoints/teacher.pt", checkpoint_bytes(model, dataset_version=data.version))
    store.put("checkpoints/garbage.pt", b"not a checkpoint")
    return store


@contextlib.contextmanager
def serving(store: LocalStore) -> Iterator[tuple[str, str, TrainerServicer, GeneratorServicer]]:
    trainer = TrainerServicer(store, default_device="cpu", max_concurrent_calls=8)
    generator = GeneratorServicer(store, device=torch.device("cpu"), max_concurrent_calls=8)
    with running(trainer) as t, running(generator) as g:
        yield f"127.0.0.1:{t.port}", f"127.0.0.1:{g.port}", trainer, generator


def test_fuzzed_requests_get_clean_statuses_and_store_nothing(store):
    root = store.root.parent
    before = files(root)
    # requests start from good ones naming a dataset that does not exist (so none trains or generates for
    # real) and the stored checkpoint (so generation requests get past loading the model)
    uris = st.sampled_from([store.uri("checkpoints/teacher.pt"), store.uri("checkpoints/garbage.pt"),
                            store.uri("datasets/none.npz"),
                            store.uri("checkpoints/none.pt"), f"file://{root}/../../etc/passwd", *HOSTILE_TEXT])
    texts = st.one_of(st.sampled_from(HOSTILE_TEXT), uris, st.integers(1000, 5000).map(lambda n: "x" * n),
                      st.text(st.characters(exclude_categories=["Cs"]), max_size=40))
    seen: dict[str, int] = {}
    with serving(store) as (trainer_addr, generator_addr, trainer, generator), \
            grpc.insecure_channel(trainer_addr) as t, grpc.insecure_channel(generator_addr) as g:
        train = t.unary_stream("/rsir.api.v1.Trainer/Train", trainer_pb2.TrainRequest.SerializeToString,
                               trainer_pb2.TrainResponse.FromString)
        generate = g.unary_stream("/rsir.api.v1.Generator/Generate", generator_pb2.GenerateRequest.SerializeToString,
                                  generator_pb2.GenerateResponse.FromString)

        missing = common_pb2.DatasetRef(uri=store.uri("datasets/none.npz"), version="ab" * 32)
        good_train = trainer_pb2.TrainRequest(
            job_id="job-1", dataset=missing, model=common_pb2.ModelSpec(name="gru", dim=8, max_len=20),
            train=trainer_pb2.TrainSpec(max_epochs=1, device="cpu"))
        good_generate = generator_pb2.GenerateRequest(
            checkpoint=common_pb2.BlobRef(uri=store.uri("checkpoints/teacher.pt")), dataset=missing,
            config=generator_pb2.GenerationSpec(tau=5, m=2, max_len=12), output_key="generated/x.npz")

        @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(st.one_of(mutations(good_train, texts).map(lambda r: (train, r)),
                         mutations(good_generate, texts).map(lambda r: (generate, r))))
        def call(pair) -> None:
            method, request = pair
            with pytest.raises(grpc.RpcError) as err:
                list(method(request, timeout=30))
            assert err.value.code() in CLEAN, (request, err.value.code(), err.value.details())
            seen[err.value.code().name] = seen.get(err.value.code().name, 0) + 1

        call()
        for address, name in ((trainer_addr, "Trainer"), (generator_addr, "Generator")):
            assert health_status(address, f"rsir.api.v1.{name}") == "SERVING"
        assert trainer.activity.snapshot()["active"] == generator.activity.snapshot()["active"] == 0
    assert files(root) == before and not os.path.exists(root.parent / "x")
    assert {"INVALID_ARGUMENT", "NOT_FOUND"} <= set(seen), seen  # some got past validation, to the storage


def test_raw_bytes_in_place_of_a_request(store):
    """Bytes that do not parse get gRPC's own refusal; bytes that happen to parse are a request like any."""
    with serving(store) as (trainer_addr, generator_addr, *_), \
            grpc.insecure_channel(trainer_addr) as t, grpc.insecure_channel(generator_addr) as g:
        # no serializers: the bytes go out as they are
        calls = [t.unary_stream("/rsir.api.v1.Trainer/Train"), g.unary_stream("/rsir.api.v1.Generator/Generate")]

        @settings(max_examples=80, deadline=None, database=None)
        @given(st.sampled_from(calls), st.binary(max_size=2048))
        def send(call, body: bytes) -> None:
            with pytest.raises(grpc.RpcError) as err:
                list(call(body, timeout=30))
            code, details = err.value.code(), err.value.details()
            assert code in CLEAN or (code == grpc.StatusCode.INTERNAL
                                     and details == "Exception deserializing request!"), (code, details)

        send()
        assert health_status(trainer_addr) == health_status(generator_addr) == "SERVING"


def test_oversize_messages_are_refused_before_any_work(store):
    servicer = TrainerServicer(store, default_device="cpu")
    server = Server(servicer.definition(), host="127.0.0.1", max_message_mb=1).start()
    try:
        assert server.ready.wait(30)
        request = trainer_pb2.TrainRequest(job_id="x" * (2 * 2**20))  # 2 MB against a 1 MB limit
        with grpc.insecure_channel(f"127.0.0.1:{server.port}",
                                   options=[("grpc.max_send_message_length", 8 * 2**20)]) as channel:
            train = channel.unary_stream("/rsir.api.v1.Trainer/Train", trainer_pb2.TrainRequest.SerializeToString,
                                         trainer_pb2.TrainResponse.FromString)
            with pytest.raises(grpc.RpcError) as err:
                list(train(request, timeout=30))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value.details()
        assert servicer.activity.snapshot() == {"active": 0, "completed": 0, "cancelled": 0, "failed": 0}
        assert health_status(f"127.0.0.1:{server.port}") == "SERVING"
    finally:
        server.stop(0).wait(10)
