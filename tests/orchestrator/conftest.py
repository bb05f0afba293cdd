"""Fixtures of the orchestrator tests: a real ``redis-server`` on a free port, the trainer and two
generator replicas as real processes sharing one local object store, and the orchestrator either
in-process (``TestClient`` over ``create_app``) or as a process. Nothing is mocked."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    import fastapi  # noqa: F401
    import httpx  # noqa: F401
    import redis
except ImportError as exc:  # fail loudly: a silently skipped suite is worse
    raise ImportError(f"tests/orchestrator need the orchestrator extra: pip install -e "
                      f"'.[dev,services,orchestrator]' ({exc})") from exc

from orchestrator_helpers import free_ports, service_env, start_process, stop

from services.common.healthcheck import health_status
from services.orchestrator.settings import OrchestratorSettings


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A real redis-server (AOF on) on a free loopback port with its own data directory."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    data = tmp_path_factory.mktemp("redis")
    port = free_ports(1)[0]
    with (data / "redis.log").open("wb") as log:
        proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data),
                                 "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
                                 "--daemonize", "no"], stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 20
    try:
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((data / "redis.log").read_text()) from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        stop(proc)


@dataclass(frozen=True)
class Services:
    trainer: str
    generators: list[str]
    storage: Path
    logs: Path


@pytest.fixture(scope="session")
def services(tmp_path_factory) -> Iterator[Services]:
    """The trainer and two generator replicas as processes over one local object store."""
    root = tmp_path_factory.mktemp("services")
    storage = root / "objects"
    ports = free_ports(3)
    procs = []
    try:
        for name, port in (("trainer", ports[0]), ("generator", ports[1]), ("generator", ports[2])):
            prefix = f"{name.upper()}_"
            env = service_env(**{f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(port), f"{prefix}DEVICE": "cpu",
                                 f"{prefix}STORAGE_URL": str(storage), f"{prefix}GRACE_SECONDS": "1"})
            log = root / f"{name}-{port}.log"
            procs.append((start_process(f"services.{name}", env, log), f"127.0.0.1:{port}",
                          f"rsir.api.v1.{name.capitalize()}", log))
        deadline = time.monotonic() + 120
        for proc, address, service, log in procs:
            while health_status(address, service, timeout=1) != "SERVING":
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{service} at {address} did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.2)
        yield Services(procs[0][1], [procs[1][1], procs[2][1]], storage, root)
    finally:
        for proc, *_ in procs:
            stop(proc)


@pytest.fixture
def settings(redis_url, services, tmp_path) -> OrchestratorSettings:
    """Settings of an orchestrator on the shared servers, in a Redis namespace of its own."""
    return OrchestratorSettings(redis_url=redis_url, redis_prefix=f"t{uuid.uuid4().hex[:10]}",
                                storage_url=str(services.storage), trainer_addr=services.trainer,
                                generator_addrs=services.generators, state_dir=tmp_path / "state",
                                busy_wait_s=60, max_upload_mb=1)


@pytest.fixture
def client(settings):
    from fastapi.testclient import TestClient

    from services.orchestrator.app import create_app

    with TestClient(create_app(settings)) as test_client:
        yield test_client



