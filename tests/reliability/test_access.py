"""Access: with ``ORCHESTRATOR_API_TOKEN`` set, every mutating operation of the OpenAPI schema (found
by iterating the schema, not by a list here) refuses a request without the right bearer token and
changes nothing; the trainer and generators, started with a shared token, refuse calls without it
and keep their health probes open."""

from __future__ import annotations

import grpc
import httpx
import pytest
import redis

from rsir_api.v1 import common_pb2, generator_pb2, trainer_pb2
from services.common.auth import bearer
from services.common.healthcheck import health_status
from services.orchestrator.app import create_app
from services.orchestrator.settings import OrchestratorSettings

MUTATING = {"post", "put", "patch", "delete"}
EXAMPLES = {"run_id": "r0123456789ab", "iteration": "0"}  # any other path parameter is a sha256
WRONG = [{}, {"Authorization": ""}, {"Authorization": "Bearer"},
         {"Authorization": "Bearer wrong"}, {"Authorization": "Basic dXNlcjpwYXNz"}, {"X-Api-Token": "{token}"},
         {"Authorization": "{token}"}, {"Authorization": "bearer {token}"}, {"Authorization": "Bearer {token}x"}]


def mutating_operations(schema: dict) -> list[tuple[str, str]]:
    """(method, path with example parameters) of every mutating operation in the schema."""
    found = []
    for template, methods in schema["paths"].items():
        path = template
        for name, value in EXAMPLES.items():
            path = path.replace(f"{{{name}}}", value)
        path = path.replace("{version}", "0" * 64).replace("{sha256}", "0" * 64)
        found += [(method, path) for method in methods if method in MUTATING]
    return found


def test_every_mutating_operation_needs_the_token(api, system, tiny_text):
    with httpx.Client(base_url=api.url, timeout=30) as http:
        schema = http.get("/openapi.json").json()
        operations = mutating_operations(schema)
        assert len(operations) >= 4, operations
        keys = redis.Redis.from_url(system.redis_url).keys(f"{api.prefix}:*")
        stored = api.objects.list()
        body = {"json": {"dataset": "synthetic", "iterations": 0}}
        for method, path in operations:
            for headers in WRONG:
                headers = {k: v.format(token=api.token) for k, v in headers.items()}
                response = http.request(method, path, headers=headers, params={"filename": "x.txt"}, **body)
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert api.token not in response.text
        assert redis.Redis.from_url(system.redis_url).keys(f"{api.prefix}:*") == keys
        assert api.objects.list() == stored
        # with the token each one gets past the check (to its own 2xx, 404, 409 or 422)
        for method, path in operations:
            response = http.request(method, path, headers={"Authorization": f"Bearer {api.token}"},
                                    params={"filename": "x.txt"}, content=tiny_text)
            assert response.status_code != 401, (method, path, response.text)


def test_the_schema_lists_every_mutating_route():
    """A mutating route left out of the schema would escape the test above: there is none."""
    app = create_app(OrchestratorSettings(trainer_addr="127.0.0.1:9", generator_addrs=["127.0.0.1:9"]))
    routes = {(method.lower(), route.path) for route in app.routes for method in getattr(route, "methods", ())}
    in_schema = {(method, path) for path, methods in app.openapi()["paths"].items() for method in methods}
    assert {r for r in routes if r[0] in MUTATING} <= in_schema


@pytest.mark.parametrize("service", ["Trainer", "Generator"])
def test_grpc_services_refuse_calls_without_the_shared_token(system, service):
    address = system.trainer_addr if service == "Trainer" else system.generator_addrs[0]
    missing = common_pb2.DatasetRef(uri=system.objects().uri("datasets/none.npz"), version="ab" * 32)
    request = (trainer_pb2.TrainRequest(job_id="access", dataset=missing) if service == "Trainer" else
               generator_pb2.GenerateRequest(checkpoint=common_pb2.BlobRef(uri=missing.uri), dataset=missing))
    response = trainer_pb2.TrainResponse if service == "Trainer" else generator_pb2.GenerateResponse
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_stream(f"/rsir.api.v1.{service}/{'Train' if service == 'Trainer' else 'Generate'}",
                                    type(request).SerializeToString, response.FromString)
        for metadata in (None, bearer("wrong"), (("authorization", system.secrets.services_token),),
                         bearer(system.secrets.api_token)):
            with pytest.raises(grpc.RpcError) as err:
                list(call(request, metadata=metadata, timeout=10))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, metadata
        with pytest.raises(grpc.RpcError) as err:  # the right token gets past the check, to the missing dataset
            list(call(request, metadata=bearer(system.secrets.services_token), timeout=10))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()
    assert health_status(address, f"rsir.api.v1.{service}") == "SERVING"  # probes send no token
