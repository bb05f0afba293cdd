"""The services as real processes (``python -m services.<svc>``): settings from the environment,
the health probe, SIGTERM shutdown, and a generator killed mid-stream leaving nothing visible."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from service_helpers import free_ports, service_env

from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from services.common.artifacts import BlobRef, publish_dataset
from services.common.client import RetryPolicy
from services.common.healthcheck import health_status
from services.common.storage import LocalStore
from services.generator.client import GeneratorClient, IncompleteStream
from services.trainer.client import TrainerClient

ROOT = Path(__file__).resolve().parents[2]


def start(module: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def wait_serving(address: str, service: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while health_status(address, service, timeout=1) != "SERVING":
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{service} did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def probe(address: str, service: str) -> int:
    return subprocess.run([sys.executable, "-m", "services.common.healthcheck", address, "--service", service],
                          cwd=ROOT, capture_output=True, timeout=30).returncode


def test_generator_killed_mid_stream_leaves_no_result(tmp_path, teacher):
    store = LocalStore(tmp_path / "store")
    checkpoint = BlobRef(store.put("checkpoints/t.pt", teacher.checkpoint).uri)
    dataset = publish_dataset(store, teacher.dataset)
    port = free_ports(1)[0]
    address = f"127.0.0.1:{port}"
    env = service_env(GENERATOR_HOST="127.0.0.1", GENERATOR_PORT=str(port), GENERATOR_DEVICE="cpu",
                      GENERATOR_STORAGE_URL=store.root.as_uri(), GENERATOR_PRELOAD=f'["{checkpoint.uri}"]')
    proc = start("services.generator", env, tmp_path / "generator.log")
    try:
        wait_serving(address, "rsir.api.v1.Generator", proc, tmp_path / "generator.log")
        assert probe(address, "rsir.api.v1.Generator") == 0
        config = GenerationConfig(tau=float("inf"), m=20, max_len=20, batch_rows=20)  # ~30 s of work
        stream = GeneratorClient(address).generate(checkpoint, dataset, config, output_key="generated/shard-0.npz")
        iterator = iter(stream)
        assert len(next(iterator).sequences) > 0
        proc.kill()  # SIGKILL: no cleanup runs
        proc.wait(60)
        with pytest.raises((grpc.RpcError, IncompleteStream)):
            list(iterator)
    finally:
        proc.kill()
        proc.wait(60)
    assert stream.summary is None
    assert not store.exists("generated/shard-0.npz")
    assert store.list("generated/") == []
    assert probe(address, "rsir.api.v1.Generator") == 1  # the probe reports a dead server


def test_trainer_sigterm_stops_gracefully_mid_training(tmp_path, teacher):
    store = LocalStore(tmp_path / "store")
    dataset = publish_dataset(store, teacher.dataset)
    port = free_ports(1)[0]
    address = f"127.0.0.1:{port}"
    env = service_env(TRAINER_HOST="127.0.0.1", TRAINER_PORT=str(port), TRAINER_STORAGE_URL=str(store.root),
                      TRAINER_GRACE_SECONDS="0.5", TRAINER_TOKEN="tok")
    log = tmp_path / "trainer.log"
    proc = start("services.trainer", env, log)
    try:
        wait_serving(address, "rsir.api.v1.Trainer", proc, log)
        model = ModelConfig(name="gru", dim=16, max_len=20)
        endless = TrainConfig(max_epochs=10_000, patience=10_000, batch_size=16, device="cpu")
        epochs = []

        def on_progress(report):
            epochs.append(report.epoch)
            if len(epochs) == 1:
                proc.send_signal(signal.SIGTERM)

        with TrainerClient(address, token="tok", policy=RetryPolicy(attempts=1)) as client, \
                pytest.raises(grpc.RpcError) as err:
            client.train("endless", dataset, model, endless, on_progress=on_progress, timeout=60)
        assert err.value.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE), err.value
        assert proc.wait(15) == 0, log.read_text()[-3000:]
    finally:
        proc.kill()
        proc.wait(60)
    text = log.read_text()
    # in order: the signal, training stopping at its next batch, then the process ending
    assert text.index("received SIGTERM") < text.index("cancelled; nothing published") < text.index("Trainer stopped")
    assert not store.exists("checkpoints/endless.pt")
