"""Runs a hostile user can start, against the real system (``system``: Redis, SeaweedFS, the trainer,
two generators): a dataset the services refuse fails its run at once with the reason, naming the
service and its address, and frees the slot for the next run; an unreachable service is retried
with backoff within the run's budget, then fails naming its address; JSON is read whatever its label;
run specs are strictly typed; reads show no storage path and can require the token; /metrics has
process metrics, call counters and the timings of failed stages."""

from __future__ import annotations

import io
import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from rsir.checkpoint import checkpoint_bytes
from rsir.config import ModelConfig
from rsir.models import build_model
from services.orchestrator.app import create_app
from services.orchestrator.settings import OrchestratorSettings
from services.testing.stack import BUCKET, PREFIX, Stack, free_ports

SPEC = {"iterations": 1, "seed": 1, "significance": False, "recipe": "paper",
        "student": {"name": "sasrec", "dim": 16, "layers": 1, "heads": 1, "max_len": 20, "dropout": 0.0},
        "train": {"max_epochs": 1, "batch_size": 64, "lr": 0.01, "device": "cpu", "eval_batch_size": 256},
        "generation": {"m": 2, "max_len": 20, "tau": 10, "batch_rows": 512}}
PATHS = re.compile(r"s3://|file://|/tmp/|\"uri\"")


@contextmanager
def orchestrator(system: Stack, tmp_path, **values: Any) -> Iterator[TestClient]:
    """An orchestrator on the system's services and storage, in a Redis namespace of its own, one run
    at a time (so that a run holding its slot would hold up the next)."""
    settings = OrchestratorSettings(**{
        "redis_url": system.redis_url, "redis_prefix": f"h{uuid.uuid4().hex[:10]}",
        "storage_url": f"s3://{BUCKET}/{PREFIX}", "s3_endpoint": system.s3.url, "s3_access_key": system.s3.access_key,
        "s3_secret_key": system.s3.secret_key, "trainer_addr": system.trainer_addr,
        "generator_addrs": system.generator_addrs, "services_token": system.secrets.services_token,
        "api_token": system.secrets.api_token, "state_dir": tmp_path / "state", "max_concurrent_runs": 1,
        "busy_wait_s": 60, **values})
    with TestClient(create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {system.secrets.api_token}"
        yield client


def wait_finished(client: TestClient, run_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (run := client.get(f"/runs/{run_id}").json())["status"] not in ("completed", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"run {run_id} still {run['status']} after {timeout} s"
        time.sleep(0.05)
    return run


def metric(text: str, name: str) -> float:
    """The value of one sample of the /metrics text (0 when absent)."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def without_real_users(client: TestClient, text: bytes) -> str:
    """A dataset version whose stored file was rewritten with ``num_real = 0`` behind rsir's back: bad
    data that no upload validation saw, which only the services find when they load it."""
    version = client.post("/datasets", params={"filename": "other.txt"}, content=text).json()["version"]
    objects, key = client.app.state.store.objects, f"datasets/{version}.npz"
    with np.load(io.BytesIO(objects.get(key))) as stored:
        arrays = {name: stored[name] for name in stored.files}
    meta = json.loads(arrays["meta"].tobytes())
    arrays["meta"] = np.frombuffer(json.dumps({**meta, "num_real": 0}).encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    objects.put(key, buffer.getvalue())
    return version


def teacher_without_its_blob(client: TestClient) -> str:
    """An uploaded teacher checkpoint whose stored file was deleted behind rsir's back."""
    model = build_model(ModelConfig(**SPEC["student"]), num_items=40)
    sha = client.post("/checkpoints", content=checkpoint_bytes(model)).json()["sha256"]
    client.app.state.store.objects.delete(f"checkpoints/uploaded/{sha}.pt")
    return sha


def test_runs_the_services_refuse_fail_at_once_and_free_the_slot(system, tmp_path, tiny_text):
    with orchestrator(system, tmp_path) as client:
        good = client.post("/datasets", params={"filename": "tiny.txt"}, content=tiny_text).json()["version"]
        t0 = time.monotonic()
        broken = without_real_users(client, tiny_text[:-50])
        no_teacher = {**SPEC, "dataset": good, "teacher": {"checkpoint": teacher_without_its_blob(client)}}
        refused = [client.post("/runs", json={**SPEC, "dataset": broken}).json()["id"],
                   client.post("/runs", json=no_teacher).json()["id"]]
        good_id = client.post("/runs", json={**SPEC, "dataset": good}).json()["id"]  # queued behind them
        first = wait_finished(client, refused[0])
        assert first["status"] == "failed" and time.monotonic() - t0 < 10, (first["status"], time.monotonic() - t0)
        refusal = "(FAILED_PRECONDITION|INVALID_ARGUMENT)"  # bad data, whichever the trainer names it
        assert re.search(f"gRPC {refusal} from the trainer at {re.escape(system.trainer_addr)}: ", first["error"])
        assert "num_real=0" in first["error"], first["error"]
        second = wait_finished(client, refused[1])
        assert second["status"] == "failed" and second["finished_at"] - second["started_at"] < 10
        assert second["stage"] == "generate", second["error"]
        assert re.search(r"gRPC NOT_FOUND from the generator at 127\.0\.0\.1:\d+: ", second["error"]), second["error"]
        assert any(address in second["error"] for address in system.generator_addrs)
        assert first["retries"] == second["retries"] == 0  # a refusal is not retried
        run = wait_finished(client, good_id)
        assert run["status"] == "completed", run["error"]
        metrics = client.get("/metrics").text
        for service in ("trainer", "generator"):
            assert metric(metrics, f'rsir_service_retries_total{{service="{service}"}}') == 0
        assert metric(metrics, 'rsir_service_call_failures_total{code="NOT_FOUND",service="generator"}') >= 1
        assert re.search(rf'^rsir_service_call_failures_total{{code="{refusal}",service="trainer"}} 1.0$', metrics,
                         re.MULTILINE)
        assert metric(metrics, 'rsir_stage_seconds_count{outcome="failed",stage="generate"}') == 1
        assert metric(metrics, 'rsir_stage_seconds_count{outcome="completed",stage="generate"}') == 1
        for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds"):
            assert metric(metrics, name) > 0, name
        # what a reader sees of the runs holds no storage path
        for path in (f"/runs/{good_id}", "/runs", f"/artifacts/runs/{good_id}/report", "/checkpoints",
                     f"/runs/{refused[1]}/events"):
            response = client.get(path)
            assert response.status_code == 200 and not PATHS.search(response.text), (path, response.text[:500])


def test_an_unreachable_trainer_is_retried_with_backoff_then_fails_naming_its_address(system, tmp_path, tiny_text):
    dead = f"127.0.0.1:{free_ports(1)[0]}"
    with orchestrator(system, tmp_path, trainer_addr=dead, retry_budget=3, retry_backoff_s=0.4,
                      retry_backoff_max_s=0.8) as client:
        version = client.post("/datasets", params={"filename": "tiny.txt"}, content=tiny_text).json()["version"]
        t0 = time.monotonic()
        run = wait_finished(client, client.post("/runs", json={**SPEC, "dataset": version}).json()["id"])
        elapsed = time.monotonic() - t0
        assert run["status"] == "failed" and run["stage"] == "train_student"
        assert f"gRPC UNAVAILABLE from the trainer at {dead}" in run["error"], run["error"]
        assert "retries are spent" in run["error"] and run["retries"] == 3
        assert 0.2 + 0.4 + 0.4 <= elapsed < 10  # three delays, each at least half of 0.4, 0.8, 0.8 s
        metrics = client.get("/metrics").text
        assert metric(metrics, 'rsir_service_calls_total{service="trainer"}') == 4
        assert metric(metrics, 'rsir_service_retries_total{service="trainer"}') == 3
        assert metric(metrics, 'rsir_service_call_failures_total{code="UNAVAILABLE",service="trainer"}') == 4


def test_a_run_taken_up_after_a_restart_is_counted(system, tmp_path, tiny_text):
    with orchestrator(system, tmp_path) as client:
        version = client.post("/datasets", params={"filename": "tiny.txt"}, content=tiny_text).json()["version"]
        slow = {**SPEC, "dataset": version, "train": {**SPEC["train"], "max_epochs": 200, "patience": 200,
                                                      "batch_size": 8}}
        run_id = client.post("/runs", json=slow).json()["id"]
        deadline = time.monotonic() + 60
        while not (client.get(f"/runs/{run_id}").json().get("progress") or {}).get("epoch"):
            assert time.monotonic() < deadline, "no epoch"
            time.sleep(0.05)
        settings = client.app.state.settings
    with TestClient(create_app(settings)) as again:  # the run was left running: the new process resumes it
        again.headers["Authorization"] = f"Bearer {system.secrets.api_token}"
        deadline = time.monotonic() + 30
        while metric(again.get("/metrics").text, 'rsir_run_resumes_total{cause="restart"}') != 1:
            assert time.monotonic() < deadline, "not resumed"
            time.sleep(0.05)
        assert again.post(f"/runs/{run_id}/cancel").status_code == 202
        assert wait_finished(again, run_id)["resumes"] == 1


@pytest.fixture
def http(api) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {api.token}"}, timeout=30) as client:
        yield client


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/octet-stream",
                                          "application/x-www-form-urlencoded", "application/json; charset=utf-8"])
def test_json_is_read_whatever_its_label(http, content_type):
    """An invalid field is named (so the body was read as JSON); without one, the run is accepted."""
    headers = {} if content_type is None else {"content-type": content_type}
    bad = http.post("/runs", content=b'{"dataset": "synthetic", "iterations": -1}', headers=headers)
    assert bad.status_code == 422 and ["body", "iterations"] in [e["loc"] for e in bad.json()["detail"]], bad.text
    assert http.post("/runs", content=b'{"dataset": "synthetic"}', headers=headers).status_code == 201
    garbage = http.post("/runs", content=b"dataset=synthetic", headers=headers)
    assert garbage.status_code == 422 and "json" in garbage.text.lower()


@pytest.mark.parametrize("content_type", ["application/xml", "multipart/form-data; boundary=x", "image/png"])
def test_other_media_types_get_a_clear_415(http, content_type):
    response = http.post("/runs", content=b'{"dataset": "synthetic"}', headers={"content-type": content_type})
    assert response.status_code == 415 and "JSON" in response.json()["detail"]


@pytest.mark.parametrize(("change", "loc"), [
    ({"iterations": True}, ["body", "iterations"]), ({"iterations": 2.0}, ["body", "iterations"]),
    ({"iterations": "2"}, ["body", "iterations"]), ({"seed": False}, ["body", "seed"]),
    ({"significance": 1}, ["body", "significance"]), ({"train": {"lr": "0.1"}}, ["body", "train", "lr"]),
    ({"train": {"max_epochs": True}}, ["body", "train", "max_epochs"]),
    ({"generation": {"m": 1.5}}, ["body", "generation", "m"]),
])
def test_run_specs_are_strictly_typed(http, change, loc):
    response = http.post("/runs", json={"dataset": "synthetic", **change})
    assert response.status_code == 422 and loc in [e["loc"] for e in response.json()["detail"]], response.text


def test_reads_can_require_the_token(system, tmp_path):
    with orchestrator(system, tmp_path, read_token_required=True) as client:
        token = client.headers.pop("Authorization")
        for path in ("/runs", "/datasets", "/checkpoints", "/recipes", "/"):
            assert client.get(path).status_code == 401, path
            assert client.get(path, headers={"Authorization": token}).status_code == 200, path
        for path in ("/healthz", "/metrics"):
            assert client.get(path).status_code == 200, path
