"""The bootstrap: health transitions, reflection, the token interceptor, errors that never crash it."""

from __future__ import annotations

import dataclasses
import threading

import grpc
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from service_helpers import free_ports, running

from rsir.config import GenerationConfig
from services.common.artifacts import BlobRef, DatasetRef
from services.common.grpc_server import Server
from services.common.healthcheck import health_status
from services.common.storage import LocalStore
from services.common.storage.s3 import S3Store
from services.generator.client import GeneratorClient
from services.generator.servicer import SERVICE_NAME, GeneratorServicer
from services.trainer.servicer import SERVICE_NAME as TRAINER_NAME

CPU = torch.device("cpu")
MISSING = DatasetRef("file:///nowhere/d.npz", "ab" * 32)


def test_service_names():
    assert SERVICE_NAME == "rsir.api.v1.Generator" and TRAINER_NAME == "rsir.api.v1.Trainer"


def test_health_is_not_serving_until_warm_then_not_serving_on_shutdown(local_store):
    gate = threading.Event()

    def warmup():
        if not gate.is_set():
            raise RuntimeError("checkpoint still loading")

    definition = dataclasses.replace(GeneratorServicer(local_store, device=CPU).definition(), warmup=warmup)
    server = Server(definition, host="127.0.0.1", retry_seconds=0.05).start()
    address = f"127.0.0.1:{server.port}"
    try:
        assert health_status(address, SERVICE_NAME) == "NOT_SERVING"
        assert health_status(address) == "NOT_SERVING"
        assert health_status(address, "rsir.api.v1.Nope") == "UNKNOWN_SERVICE"
        gate.set()
        assert server.ready.wait(5)
        assert health_status(address, SERVICE_NAME) == "SERVING" and health_status(address) == "SERVING"
        with grpc.insecure_channel(address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME),
                                                              timeout=10)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            stopped = server.stop(grace=5)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
    finally:
        stopped = server.stop(0)
    assert stopped.wait(10)


def test_unreachable_storage_keeps_it_not_serving():
    dead = S3Store("runs", endpoint_url=f"http://127.0.0.1:{free_ports(1)[0]}", access_key="k", secret_key="s",
                   connect_timeout=0.2)
    server = Server(GeneratorServicer(dead, device=CPU).definition(), host="127.0.0.1", retry_seconds=0.1).start()
    try:
        assert not server.ready.wait(1.0)
        assert health_status(f"127.0.0.1:{server.port}", SERVICE_NAME) == "NOT_SERVING"
    finally:
        server.stop(0).wait(10)


def test_reflection_lists_the_services(local_store):
    with running(GeneratorServicer(local_store, device=CPU)) as server, \
            grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
    assert {SERVICE_NAME, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= services


def test_token_interceptor(local_store):
    with running(GeneratorServicer(local_store, device=CPU), token="s3cret") as server:
        address = f"127.0.0.1:{server.port}"
        assert health_status(address, SERVICE_NAME) == "SERVING"  # probes send no metadata
        for token in (None, "wrong"):
            with GeneratorClient(address, token=token) as client, pytest.raises(grpc.RpcError) as err:
                list(client.generate(BlobRef("file:///nowhere/c.pt"), MISSING, GenerationConfig()))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "Bearer" in err.value.details()
        with GeneratorClient(address, token="s3cret") as client, pytest.raises(grpc.RpcError) as err:
            list(client.generate(BlobRef(local_store.uri("missing.pt")), MISSING, GenerationConfig()))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND  # past the check


class BrokenStore(LocalStore):
    def head(self, key):
        raise RuntimeError("disk on fire")


def test_unexpected_errors_answer_internal_and_the_server_lives_on(tmp_path):
    store = BrokenStore(tmp_path)
    servicer = GeneratorServicer(store, device=CPU)
    with running(servicer) as server, GeneratorClient(f"127.0.0.1:{server.port}") as client:
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as err:
                list(client.generate(BlobRef(store.uri("c.pt")), MISSING, GenerationConfig()))
            assert err.value.code() == grpc.StatusCode.INTERNAL
            assert "RuntimeError: disk on fire" in err.value.details()
        assert health_status(f"127.0.0.1:{server.port}", SERVICE_NAME) == "SERVING"
    assert servicer.activity.snapshot() == {"active": 0, "completed": 0, "cancelled": 0, "failed": 2}
