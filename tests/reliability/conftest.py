"""Fixtures of the reliability tests: one whole system as real processes (``system``: Redis with an
append-only file, SeaweedFS, the trainer, two generator replicas, the orchestrator, all with tokens),
a second orchestrator for hostile HTTP input (``api``: its own local storage, unreachable services so
that no fuzzed run trains), and the undisturbed reference run every fault is compared with."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))  # service_helpers, for test_hostile_grpc

from services.testing.stack import FAULT_SPEC, Api, Stack, start_api, start_stack, submit, wait_finished


@pytest.fixture(scope="session")
def system(tmp_path_factory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("system"), max_concurrent_runs=2)
    try:
        yield stack
    finally:
        stack.close()


@pytest.fixture(scope="session")
def dataset(system, tiny_text) -> str:
    with system.http() as http:
        response = http.post("/datasets", params={"filename": "tiny.txt"}, content=tiny_text)
    assert response.status_code == 201, response.text
    return response.json()["version"]


@pytest.fixture(scope="session")
def reference(system, dataset) -> dict:
    """The undisturbed run of ``FAULT_SPEC``: every faulted run must end with its dataset versions."""
    run_id = submit(system, {**FAULT_SPEC, "dataset": dataset})
    with system.http() as http:
        run = wait_finished(http, run_id)
    assert run["status"] == "completed", run["error"]
    assert len(set(run["datasets"])) == 3
    return run


@pytest.fixture(scope="session")
def api(system, tmp_path_factory) -> Iterator[Api]:
    """An orchestrator for hostile input, on the system's Redis (see ``services.testing.stack.start_api``)."""
    api = start_api(tmp_path_factory.mktemp("api"), system.redis_url)
    try:
        yield api
    finally:
        api.process.stop()
