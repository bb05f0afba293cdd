"""The HTTP surface against a real Redis: validation (422 naming the field), the token (401), uploads
(413/422 storing nothing, content addressing), health, readiness and metrics."""

from __future__ import annotations

import json
import uuid

import pytest
from fastapi.testclient import TestClient
from orchestrator_helpers import tiny_spec, wait_for

from rsir.checkpoint import load_checkpoint
from services.common.storage import LocalStore
from services.orchestrator.app import create_app
from services.orchestrator.settings import OrchestratorSettings


@pytest.fixture
def isolated(settings, tmp_path):
    """An orchestrator with object storage of its own (so 'stores nothing' can be checked) and a token."""
    own = changed(settings, storage_url=str(tmp_path / "objects"), api_token="s3cret",
                  redis_prefix=f"t{uuid.uuid4().hex[:10]}")
    with TestClient(create_app(own)) as test_client:
        test_client.headers["Authorization"] = "Bearer s3cret"
        yield test_client, LocalStore(tmp_path / "objects"), test_client.app.state.store


def changed(settings: OrchestratorSettings, **values) -> OrchestratorSettings:
    return OrchestratorSettings(**{**settings.model_dump(), **values})


def upload(client, body: bytes, filename: str = "tiny.txt", **params):
    return client.post("/datasets", params={"filename": filename, **params}, content=body)


def test_upload_is_validated_content_addressed_and_downloadable(client, tiny_text):
    first = upload(client, tiny_text, name="tiny")
    assert first.status_code == 201, first.text
    record = first.json()
    assert record["source"] == "upload" and record["parent"] is None and record["name"] == "tiny"
    assert record["stats"]["users"] == 120 and record["stats"]["items"] <= 40
    again = upload(client, tiny_text, filename="copy.txt")
    assert again.status_code == 200 and again.json()["version"] == record["version"]
    assert [d["version"] for d in client.get("/datasets").json()] == [record["version"]]
    assert client.get(f"/datasets/{record['version']}").json()["ancestors"] == []
    text = client.get(f"/artifacts/datasets/{record['version']}", params={"format": "txt"})
    assert text.status_code == 200 and text.content == tiny_text
    csv = "user,item,timestamp\n" + "".join(f"u{u},i{(u * 7 + t) % 9},{t}\n" for u in range(12) for t in range(6))
    logged = upload(client, csv.encode(), filename="log.csv", k_core=2)
    assert logged.status_code == 201, logged.text
    assert logged.json()["stats"]["users"] == 12


@pytest.mark.parametrize(("body", "filename", "fragment"), [
    (b"1 2 3 4\n2 5 x 7\n", "bad.txt", "line 2"),
    (b"1 2 3 4\n1 5 6 7\n", "dup.txt", "already appeared"),
    (b"\x89PNG\r\n\x1a\n\x00\x00garbage", "img.npz", "not a stored dataset"),
    (b"user,item\n", "empty.csv", "no interactions"),
    (b"1 2 3 4\n", "data.json", "unsupported suffix"),
])
def test_malformed_upload_is_422_and_stores_nothing(isolated, body, filename, fragment):
    client, objects, store = isolated
    response = upload(client, body, filename=filename)
    assert response.status_code == 422, response.text
    assert fragment in str(response.json()["detail"])
    assert "/tmp" not in response.text and "rsir-upload" not in response.text  # no server paths leak
    assert objects.list() == [] and store.versions.list() == []


def test_oversized_upload_is_413_and_stores_nothing(isolated):
    client, objects, store = isolated
    big = b"1 2 3 4 5\n" * 120_000  # 1.2 MB against the 1 MB cap
    assert upload(client, big).status_code == 413
    chunked = client.post("/datasets", params={"filename": "big.txt"},  # no Content-Length: capped while streaming
                          content=(big[i:i + 65536] for i in range(0, len(big), 65536)))
    assert chunked.status_code == 413
    assert objects.list() == [] and store.versions.list() == []


def test_missing_or_wrong_token_is_401_on_every_mutating_endpoint(isolated, tiny_text):
    client, objects, store = isolated
    for headers in ({"Authorization": ""}, {"Authorization": "Bearer wrong"}):
        for method, path, kwargs in (("post", "/runs", {"json": tiny_spec("synthetic")}),
                                     ("post", "/datasets?filename=a.txt", {"content": tiny_text}),
                                     ("post", "/checkpoints", {"content": b"x"}),
                                     ("post", "/runs/r0123456789ab/cancel", {})):
            response = client.request(method, path, headers=headers, **kwargs)
            assert response.status_code == 401, (path, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
    assert client.get("/runs", headers={"Authorization": ""}).status_code == 200  # reads stay open
    assert objects.list() == [] and store.runs.list() == []


@pytest.mark.parametrize(("change", "loc"), [
    ({"generation": {"tau": 0}}, ["body", "generation", "tau"]),
    ({"generation": {"p": 1.5}}, ["body", "generation", "p"]),
    ({"generation": {"m": 0}}, ["body", "generation", "m"]),
    ({"generation": {"prefix": "middle"}}, ["body", "generation", "prefix"]),
    ({"iterations": 100}, ["body", "iterations"]),
    ({"student": {"name": "bert4rec"}}, ["body", "student", "name"]),
    ({"train": {"lr": -1}}, ["body", "train", "lr"]),
    ({"train": {"finetune_lr_scale": 0}}, ["body", "train", "finetune_lr_scale"]),
    ({"bogus": 1}, ["body", "bogus"]),
    ({"dataset": "../../etc/passwd"}, ["body", "dataset"]),
    ({"dataset": "a" * 64}, ["body", "dataset"]),
    ({"teacher": {"checkpoint": "b" * 64}}, ["body", "teacher", "checkpoint"]),
])
def test_invalid_spec_is_422_naming_the_field(client, change, loc):
    response = client.post("/runs", json={**tiny_spec("synthetic"), **change})
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]], response.json()


@pytest.mark.parametrize(("change", "field"), [
    ({"student": {"dim": 30, "heads": 4}}, "heads"),
    ({"generation": {"max_len": 40}}, "generation.max_len"),
    ({"teacher": {"model": {"name": "gru"}, "checkpoint": "c" * 64}}, "teacher"),
])
def test_cross_field_errors_name_the_field(client, change, field):
    response = client.post("/runs", json={**tiny_spec("synthetic"), **change})
    assert response.status_code == 422
    assert field in response.json()["detail"][0]["msg"]


def test_a_curl_style_form_label_is_read_as_json(client):
    """``curl -d @spec.json`` sends application/x-www-form-urlencoded; the body is still JSON."""
    form = {"content-type": "application/x-www-form-urlencoded"}
    bad = client.post("/runs", content=json.dumps({**tiny_spec("synthetic"), "iterations": -1}), headers=form)
    assert bad.status_code == 422 and ["body", "iterations"] in [e["loc"] for e in bad.json()["detail"]]
    garbage = client.post("/runs", content=b"iterations=2", headers=form)
    assert garbage.status_code == 422 and "json" in garbage.text.lower()


def test_health_readiness_and_metrics(client, settings):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"].values()) == {"ok"}
    metrics = client.get("/metrics").text
    assert 'rsir_runs{status="completed"} 0.0' in metrics and "rsir_queue_length 0.0" in metrics
    assert 'rsir_http_requests_total{method="GET",route="/readyz",status="200"} 1.0' in metrics
    dead = changed(settings, trainer_addr="127.0.0.1:9", redis_prefix=f"t{uuid.uuid4().hex[:8]}")
    with TestClient(create_app(dead)) as other:
        response = other.get("/readyz")
        assert response.status_code == 503
        assert response.json()["checks"]["trainer"] == "UNREACHABLE"


def test_cancel_a_running_run_and_a_finished_one(client, tiny_text):
    version = upload(client, tiny_text).json()["version"]
    endless = {**tiny_spec(version), "train": {"max_epochs": 500, "patience": 500, "batch_size": 8, "device": "cpu"}}
    run_id = client.post("/runs", json=endless).json()["id"]
    wait_for(lambda: (client.get(f"/runs/{run_id}").json().get("progress") or {}).get("epoch"), 60, "an epoch")
    assert client.post(f"/runs/{run_id}/cancel").status_code == 202
    run = wait_for(lambda: (r := client.get(f"/runs/{run_id}").json())["status"] == "cancelled" and r, 30,
                   "the cancellation")
    assert run["stage"] == "train_student" and run["iterations"][0]["student"] is None
    assert client.post(f"/runs/{run_id}/cancel").status_code == 409
    assert client.get("/runs/r000000000000").status_code == 404
    assert client.get("/runs/not-an-id").status_code == 422


def test_uploaded_checkpoint_is_validated_and_fits_the_dataset(client, tiny_text, isolated):
    own_client, objects, _ = isolated
    assert own_client.post("/checkpoints", content=b"not a checkpoint").status_code == 422
    assert objects.list() == []
    version = upload(client, tiny_text).json()["version"]
    spec = {**tiny_spec(version), "iterations": 0, "significance": False}
    run_id = client.post("/runs", json=spec).json()["id"]
    run = wait_for(lambda: (r := client.get(f"/runs/{run_id}").json())["status"] in ("completed", "failed") and r,
                   90, "the run")
    assert run["status"] == "completed", run["error"]
    payload = client.get(f"/artifacts/runs/{run_id}/checkpoints/0").content
    _, info = load_checkpoint(payload)
    created = client.post("/checkpoints", content=payload)
    assert created.status_code == 201 and created.json()["num_items"] == info.num_items
    sha = created.json()["sha256"]
    assert client.get(f"/checkpoints/{sha}").json()["model"]["dim"] == 16
    weak = client.post("/runs", json={**tiny_spec(version), "iterations": 1, "significance": False,
                                      "teacher": {"checkpoint": sha}, "student": {**spec["student"], "dim": 32}})
    assert weak.status_code == 201, weak.text  # a fixed small teacher generates for a larger student
    run = wait_for(lambda: (r := client.get(f"/runs/{weak.json()['id']}").json())["status"] in ("completed", "failed")
                   and r, 90, "the weak-to-strong run")
    assert run["status"] == "completed", run["error"]
    assert run["iterations"][0]["generation"]["teacher_checkpoint"]["sha256"] == sha
    assert client.get(f"/datasets/{run['datasets'][1]}").json()["teacher_checkpoint"]["sha256"] == sha
