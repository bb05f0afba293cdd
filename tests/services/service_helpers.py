"""Helpers of the service tests (imported by the tests and by conftest.py)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from processes import free_ports as free_ports  # re-exported: the services tests import it from here

from services.common.grpc_server import Server
from services.common.storage.s3 import S3Store

BUCKET = "runs"
ACCESS_KEY, SECRET_KEY = "testkey", "testsecret"


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    bucket: str = BUCKET
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY

    def store(self, prefix: str = "") -> S3Store:
        return S3Store(self.bucket, prefix, endpoint_url=self.url, access_key=self.access_key,
                       secret_key=self.secret_key)

    def env(self, prefix: str) -> dict[str, str]:
        """Service settings pointing at this server, for a service started as a process."""
        return {f"{prefix}S3_ENDPOINT": self.url, f"{prefix}S3_ACCESS_KEY": self.access_key,
                f"{prefix}S3_SECRET_KEY": self.secret_key}


@contextlib.contextmanager
def running(servicer, *, token: str | None = None, port: int = 0) -> Iterator[Server]:
    """Serve ``servicer`` on a loopback port until the block ends; waits until it is SERVING."""
    server = Server(servicer.definition(), host="127.0.0.1", port=port, token=token, retry_seconds=0.2).start()
    try:
        assert server.ready.wait(30), "service never became ready"
        yield server
    finally:
        server.stop(0).wait(10)


def service_env(**extra: str) -> dict[str, str]:
    """Environment of a service started as a process from the repository root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINER_", "GENERATOR_"))}
    return {**env, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}
