"""Faults in a real system, each in the middle of a run of ``FAULT_SPEC``: a generator SIGKILLed while
it streams a shard, the trainer SIGKILLed mid-epoch (and restarted), Redis SIGKILLed and restarted
from its append-only file, the object store (SeaweedFS) down for a while, twice. Each run completes
with the dataset versions of the undisturbed reference run, no run is lost, no dataset version is made
twice, and every stored blob is whole (it reads back and matches its sha256). A teacher checkpoint
changed at rest fails its run with the reason, storing nothing.

(SIGKILL of the orchestrator in every stage is ``tests/orchestrator/test_orchestrator_resume.py``.)
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import httpx
import pytest
import redis
from processes import wait_for

from rsir.checkpoint import checkpoint_bytes
from rsir.config import ModelConfig
from rsir.models import build_model
from services.generator.results import read_result
from services.testing.stack import FAULT_SPEC, Stack, submit, wait_finished

pytestmark = pytest.mark.slow
OUTAGE_S = float(os.environ.get("RSIR_OUTAGE_S", "10"))  # how long the object store stays down (bench: 30)


def wait_event(system: Stack, run_id: str, match: Callable[[str, dict], bool], timeout: float = 120) -> None:
    """Block on the run's event stream until an event matches: XREAD wakes at once, no polling delay."""
    client, key = redis.Redis.from_url(system.redis_url), system.store().events.key(run_id)
    last, deadline = "0-0", time.monotonic() + timeout
    while time.monotonic() < deadline:
        for _, entries in client.xread({key: last}, block=1000) or []:
            for entry_id, fields in entries:
                last = entry_id
                if match(fields[b"type"].decode(), json.loads(fields[b"data"])):
                    client.close()
                    return
    raise AssertionError(f"no matching event of run {run_id} within {timeout} s")


def check_whole(system: Stack, reference: dict, run: dict) -> None:
    """The run ended as the reference did; nothing lost, doubled or half-written."""
    assert run["status"] == "completed", run["error"]
    assert run["datasets"] == reference["datasets"]
    store, objects = system.store(), system.objects()
    assert {d["version"] for d in store.versions.list(1000)} >= set(reference["datasets"])
    mine = [d for d in store.versions.list(1000) if d.get("run") == run["id"]]
    assert mine == [], "the faulted run published a dataset version the reference had already made"
    keys = objects.list()
    for key in keys:
        payload = objects.get(key)  # raises unless the blob is whole and matches its recorded sha256
        if key.startswith(f"generated/{run['id']}/"):
            read_result(payload)
    shards = [k for k in keys if k.startswith(f"generated/{run['id']}/")]
    assert len(shards) == FAULT_SPEC["iterations"] * len(system.generators)  # each stored once
    for version in run["datasets"]:
        assert store.versions.load(version).version == version


def test_generator_killed_mid_stream_moves_its_shard_to_another_replica(system, dataset, reference):
    victim, address = system.generators[0], system.generator_addrs[0]
    run_id = submit(system, {**FAULT_SPEC, "dataset": dataset})
    store = system.store()
    wait_for(lambda: any(s.get("address") == address and not s.get("done")
                         for s in (store.runs.get_progress(run_id) or {}).get("shards", {}).values()), 120,
             "a shard streaming from generator 0", 0.001)
    victim.kill()
    with system.http() as http:
        run = wait_finished(http, run_id)
    victim.start()
    check_whole(system, reference, run)
    shard = run["iterations"][0]["generation"]["shards"][0]
    assert shard["attempts"] >= 2 and shard["address"] == system.generator_addrs[1], shard


def test_trainer_killed_mid_epoch_retrains_the_job(system, dataset, reference):
    run_id = submit(system, {**FAULT_SPEC, "dataset": dataset})
    # the last iteration trains on the most data, so its epochs leave the kill the widest window
    wait_event(system, run_id, lambda kind, data: kind == "epoch" and data["iteration"] == 2 and data["epoch"] == 1)
    system.trainer.kill()
    system.trainer.start()  # as a supervisor would
    with system.http() as http:
        run = wait_finished(http, run_id)
    check_whole(system, reference, run)
    # training started again from the top: epoch 1 of iteration 2 was reported twice
    events = system.store().events.range(run_id)
    epochs = [d["epoch"] for _, kind, d in events if kind == "epoch" and d["iteration"] == 2]
    assert epochs.count(1) == 2, epochs


def test_redis_killed_and_restarted_from_its_append_only_file(system, dataset, reference):
    before = system.store().runs.list(1000)
    run_id = submit(system, {**FAULT_SPEC, "dataset": dataset})
    wait_event(system, run_id, lambda kind, data: kind == "stage" and data["stage"] == "generate")
    time.sleep(1.5)  # what the driver wrote is in the append-only file (fsync every second)
    system.redis.kill()
    with system.http() as http:
        down = http.get(f"/runs/{run_id}")
        assert down.status_code == 503 and "Redis" in down.json()["detail"], down.text
        time.sleep(1.0)
        system.redis.start()
        run = wait_finished(http, run_id)
    check_whole(system, reference, run)
    assert run["resumes"] == 0, "waiting out an outage is not a resume (the orchestrator never restarted)"
    after = {r["id"]: r for r in system.store().runs.list(1000)}
    assert all(r["id"] in after for r in before), "a run was lost"


def outage(system: Stack, http: httpx.Client) -> None:
    """SeaweedFS down (SIGKILL) for ``OUTAGE_S`` seconds, then started again on the same data."""
    system.weed.kill()
    down_at = time.monotonic()
    ready = wait_for(lambda: (r := http.get("/readyz")).status_code == 503 and r.json(), 30, "not ready")
    assert ready["checks"]["storage"] != "ok"
    time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_at)))
    system.weed.start()


def test_object_store_down_then_back(system, dataset, reference):
    """Two outages in one run: while generators stream their shards (they cannot store the results)
    and while the trainer trains (it cannot publish the checkpoint)."""
    run_id = submit(system, {**FAULT_SPEC, "dataset": dataset})
    store = system.store()
    with system.http() as http:
        wait_for(lambda: any(not s.get("done")
                             for s in (store.runs.get_progress(run_id) or {}).get("shards", {}).values()),
                 120, "a shard streaming", 0.001)
        outage(system, http)
        wait_event(system, run_id, lambda kind, data: kind == "epoch" and data["iteration"] == 1)
        outage(system, http)
        run = wait_finished(http, run_id, timeout=300)
        assert http.get("/readyz").status_code == 200
    check_whole(system, reference, run)
    assert run["resumes"] == 0, "waiting out an outage is not a resume (the orchestrator never restarted)"


def test_a_tampered_teacher_checkpoint_fails_the_run_with_its_reason(system, dataset):
    """A fixed teacher checkpoint whose stored bytes were changed behind rsir's back (its recorded sha256
    kept) is refused by the generators: the run fails naming the cause, and stores nothing of its own."""
    items = system.store().versions.get(dataset)["stats"]["items"]
    payload = checkpoint_bytes(build_model(ModelConfig(name="gru", dim=8, max_len=20), items))
    with system.http() as http:
        sha = http.post("/checkpoints", content=payload).json()["sha256"]
    objects = system.objects()
    key = objects._object(f"checkpoints/uploaded/{sha}.pt")
    objects.client.put_object(Bucket=objects.bucket, Key=key, Body=payload[:-1] + b"!", Metadata={"sha256": sha})
    versions = len(system.store().versions.list(1000))
    run_id = submit(system, {**FAULT_SPEC, "dataset": dataset, "iterations": 1, "teacher": {"checkpoint": sha}})
    with system.http() as http:
        run = wait_finished(http, run_id)
    assert run["status"] == "failed" and run["stage"] == "generate", run
    assert "FAILED_PRECONDITION" in run["error"] and "modified outside rsir" in run["error"], run["error"]
    assert objects.list(f"generated/{run_id}/") == [] and len(system.store().versions.list(1000)) == versions


def test_no_run_lost_and_no_dataset_version_doubled(system, reference):
    """Across the reference and every faulted run of the same spec: all completed with the same versions,
    and together they made exactly the reference's K versions, each once."""
    runs = [r for r in system.store().runs.list(1000) if r["spec"] == reference["spec"]]
    assert {(r["status"], tuple(r["datasets"])) for r in runs} == {("completed", tuple(reference["datasets"]))}
    ids = {r["id"] for r in runs}
    made = [d["version"] for d in system.store().versions.list(1000) if d.get("run") in ids]
    assert sorted(made) == sorted(reference["datasets"][1:])
