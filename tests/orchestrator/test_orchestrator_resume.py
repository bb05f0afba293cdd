"""SIGKILL of the orchestrator in every stage, then a restart: the run completes with exactly K new
dataset versions, the same ones an uninterrupted run produces.

Kill points are deterministic: a failpoint (``ORCHESTRATOR_FAILPOINT``) makes the process SIGKILL
itself right after a stage's side effect and before its commit (the most dangerous window), and
the test also SIGKILLs it from outside while a training and a generation are in flight, found by
polling the run's stage and events in Redis.
"""

from __future__ import annotations

import signal
import uuid

import httpx
import pytest
import redis
from orchestrator_helpers import free_ports, orchestrator_env, start_orchestrator, stop, tiny_spec, wait_for

from services.common.storage import LocalStore
from services.orchestrator.report import run_document
from services.orchestrator.schemas import RunSpec
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.store import Store

pytestmark = pytest.mark.slow
TEACHER = {"model": {"name": "gru", "dim": 8, "max_len": 20, "dropout": 0.0},
           "train": {"max_epochs": 2, "batch_size": 64, "lr": 0.01, "device": "cpu"}}
# students train for 40 epochs (about a second), so that a kill from outside lands mid-training
STUDENT_TRAIN = {"max_epochs": 40, "patience": 40, "batch_size": 16, "lr": 0.01, "device": "cpu"}
FAILPOINTS = [("train_student:trained", "train_student", 0), ("train_teacher:trained", "train_teacher", 0),
              ("generate:shard_stored", "generate", 0), ("merge:published", "merge", 0)]


def test_sigkill_in_every_stage_then_restart_completes_the_run(redis_url, services, tiny_text, tmp_path):
    settings = OrchestratorSettings(redis_url=redis_url, redis_prefix=f"t{uuid.uuid4().hex[:10]}",
                                    storage_url=str(services.storage), trainer_addr=services.trainer,
                                    generator_addrs=services.generators, state_dir=tmp_path / "state", busy_wait_s=60)
    objects = LocalStore(services.storage)
    store = Store(redis.Redis.from_url(redis_url), objects, prefix=settings.redis_prefix)
    port, log = free_ports(1)[0], tmp_path / "orchestrator.log"
    started = []

    def start(failpoint: str | None = None, wait: bool = True):
        env = orchestrator_env(settings, port, **({"FAILPOINT": failpoint} if failpoint else {}))
        started.append(start_orchestrator(env, log, wait=wait))
        return started[-1]

    def killed_itself(orchestrator) -> dict:
        assert orchestrator.proc.wait(120) == -signal.SIGKILL, log.read_text()[-3000:]
        return store.runs.get(run["id"])

    def spec(version: str) -> dict:
        return tiny_spec(version, teacher=TEACHER, train=STUDENT_TRAIN)

    try:
        orchestrator = start()
        with httpx.Client(base_url=orchestrator.url, timeout=30) as http:
            version = http.post("/datasets", params={"filename": "tiny.txt"}, content=tiny_text).json()["version"]
        stop(orchestrator.proc)
        # what POST /runs does, with no orchestrator up: the next one to start dies in the run's first stage
        validated = RunSpec.model_validate(spec(version))
        run = run_document(validated, *validated.resolve())
        store.runs.create(run)
        run_id = run["id"]
        run = killed_itself(start("prepare:published", wait=False))
        assert (run["status"], run["stage"]) == ("running", "prepare")
        hit = ["prepare"]

        for failpoint, stage, iteration in FAILPOINTS:  # each restart resumes the stage, then dies in the next one
            run = killed_itself(start(failpoint, wait=False))
            assert (run["stage"], run["iteration"]) == (stage, iteration), failpoint
            hit.append(stage)
        assert len(store.versions.list()) == 2  # D0 and D1: the merge published D1 before it died

        last = store.events.range(run_id)[-1][0]
        orchestrator = start()  # SIGKILL from outside in the middle of iteration 1's training
        wait_for(lambda: any(kind == "epoch" and data["iteration"] == 1
                             for _, kind, data in store.events.range(run_id, last)), 120, "an epoch of iteration 1",
                 0.005)
        stop(orchestrator.proc, signal.SIGKILL)
        hit.append(store.runs.get(run_id)["stage"])

        orchestrator = start()  # and while iteration 1 generates (or later, if generation wins the race)
        wait_for(lambda: (r := store.runs.get(run_id))["stage"] in ("generate", "merge") or r["iteration"] == 2, 120,
                 "generation", 0.005)
        stop(orchestrator.proc, signal.SIGKILL)
        hit.append(store.runs.get(run_id)["stage"])

        run = killed_itself(start("report:built", wait=False))
        assert run["stage"] == "report"
        hit.append("report")

        orchestrator = start()
        run = wait_for(lambda: (r := store.runs.get(run_id))["status"] != "running" and r, 120, "the run to finish")
        stop(orchestrator.proc)
        assert run["status"] == "completed", run["error"]
        assert hit[:6] == ["prepare", "train_student", "train_teacher", "generate", "merge", "train_student"], hit
        assert run["resumes"] == 8 == sum(kind == "resumed" for _, kind, _ in store.events.range(run_id))

        # exactly K new versions, each published once, in a chain; every shard of every pass stored once
        datasets = store.versions.list()
        assert sorted(d.get("iteration", 0) for d in datasets) == [0, 1, 2], datasets
        assert all(d["run"] == run_id for d in datasets if d["source"] == "generated")
        assert run["datasets"][0] == version and len(set(run["datasets"])) == 3
        assert [store.versions.get(v)["parent"] for v in run["datasets"][1:]] == run["datasets"][:2]
        assert len(objects.list(f"generated/{run_id}/")) == 2 * len(services.generators)
        assert [it["student"] is not None for it in run["iterations"]] == [True] * 3
        assert [it["teacher"] is not None for it in run["iterations"]] == [True, True, False]
        assert objects.exists(f"reports/{run_id}.json")

        # an uninterrupted run of the same spec makes the very same versions: nothing was lost or doubled
        orchestrator = start()
        with httpx.Client(base_url=orchestrator.url, timeout=30) as http:
            again = http.post("/runs", json={**spec(version), "significance": False}).json()["id"]
            clean = wait_for(lambda: (r := http.get(f"/runs/{again}").json())["status"] not in ("queued", "running")
                             and r, 120, "the uninterrupted run")
        stop(orchestrator.proc)
        assert clean["status"] == "completed", clean["error"]
        assert clean["datasets"] == run["datasets"]
        assert len(store.versions.list()) == 3
    finally:
        for orchestrator in started:  # whatever an assertion left running
            stop(orchestrator.proc, signal.SIGKILL)
