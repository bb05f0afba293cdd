"""A 2-iteration run end to end with every piece real: the orchestrator as a process, Redis, the
trainer and two generator replicas (plus a dead address whose shard must fail over), followed over
server-sent events, then shown by the dashboard in headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from orchestrator_helpers import TINY_TRAIN, free_ports, orchestrator_env, start_orchestrator, stop, tiny_spec

from rsir.checkpoint import load_checkpoint
from services.orchestrator.settings import OrchestratorSettings

pytestmark = pytest.mark.slow
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage"]


@dataclass
class Finished:
    http: httpx.Client
    run: dict[str, Any]
    events: list[tuple[str, str, dict[str, Any]]]
    settings: OrchestratorSettings
    dead: str


def read_events(response: httpx.Response) -> list[tuple[str, str, dict[str, Any]]]:
    """Parse a text/event-stream body: (id, event, data) per event."""
    events, fields = [], {}
    for line in response.iter_lines():
        if not line:
            if "data" in fields:
                events.append((fields.get("id", ""), fields.get("event", "message"), json.loads(fields["data"])))
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            fields[name] = value
    return events


@pytest.fixture(scope="module")
def finished(redis_url, services, tiny_text, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    dead = f"127.0.0.1:{free_ports(1)[0]}"  # nothing listens there: its shard must move to another replica
    settings = OrchestratorSettings(redis_url=redis_url, redis_prefix=f"t{uuid.uuid4().hex[:10]}",
                                    storage_url=str(services.storage), trainer_addr=services.trainer,
                                    generator_addrs=[services.generators[0], dead, services.generators[1]],
                                    state_dir=tmp / "state", busy_wait_s=60)
    orchestrator = start_orchestrator(orchestrator_env(settings, free_ports(1)[0]), tmp / "orchestrator.log")
    http = httpx.Client(base_url=orchestrator.url, timeout=30)
    try:
        version = http.post("/datasets", params={"filename": "tiny.txt"}, content=tiny_text).json()["version"]
        # students also train on as many Insertion sequences as RSIR added (the dashboard shows how many)
        spec = tiny_spec(version, name="end to end", train={**TINY_TRAIN, "insertion_ratio": 1})
        created = http.post("/runs", json=spec)
        assert created.status_code == 201, created.text
        with http.stream("GET", created.json()["events"], timeout=180) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            events = read_events(response)  # the server ends the stream after 'finished'
        yield Finished(http, http.get(created.json()["url"]).json(), events, settings, dead)
    finally:
        http.close()
        stop(orchestrator.proc)
        log = orchestrator.log.read_text()
        # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal (exit status -15)
        assert orchestrator.proc.returncode in (0, -signal.SIGTERM), log[-3000:]
        assert "Application shutdown complete" in log


def test_two_iterations_end_to_end(finished):
    run = finished.run
    assert run["status"] == "completed", run["error"]
    assert run["stage"] == "done" and run["stopped_by"] == "iterations" and run["resumes"] == 0
    assert [it["iteration"] for it in run["iterations"]] == [0, 1, 2]
    sequences = [it["dataset_stats"]["sequences"] for it in run["iterations"]]
    assert sequences[0] == 120 and sequences[0] < sequences[1] < sequences[2]
    for it in run["iterations"]:
        assert set(it["student"]["test"]) >= {"ndcg@10", "recall@10"} and it["timings"]["train_student"] > 0
        synthetic = it["dataset_stats"]["synthetic_sequences"]  # Insertion adds as many as RSIR did, none to D0
        assert (it["student"]["finetune_kept"], it["student"]["insertion_sequences"]) == (None, synthetic)
    for it in run["iterations"][:2]:
        stats = it["generation"]["stats"]
        assert stats["rows"] == 2 * 120  # m attempts per real user
        assert stats["stopped_fidelity"] + stats["stopped_empty_pool"] + stats["stopped_length"] == stats["rows"]
        assert it["merge"]["added"] > 0
    assert run["selected"] == max(range(3), key=lambda k: (run["iterations"][k]["student"]["valid"]["ndcg@20"], -k))
    if run["selected"]:
        assert set(run["significance"]["tests"]) == {"recall@10", "ndcg@10"}
    report = finished.http.get(f"/artifacts/runs/{run['id']}/report").json()
    assert report["format"] == "rsir-run-report/1" and report["datasets"] == run["datasets"]


def test_exactly_k_dataset_versions_with_their_lineage(finished, services):
    run, http = finished.run, finished.http
    assert len(set(run["datasets"])) == 3
    mine = [d for d in http.get("/datasets").json() if d.get("run") == run["id"]]
    assert sorted(d["iteration"] for d in mine) == [1, 2]
    for k in (1, 2):
        record = http.get(f"/datasets/{run['datasets'][k]}").json()
        assert record["parent"] == run["datasets"][k - 1] and record["source"] == "generated"
        assert record["ancestors"] == run["datasets"][:k][::-1]
        assert record["teacher_checkpoint"] == run["iterations"][k - 1]["student"]["checkpoint"]
        assert record["generation"]["tau"] == 10 and record["generation"]["seed"] == 1
        assert record["merge"] == run["iterations"][k - 1]["merge"]
    shards = sorted(p.name for p in (services.storage / "generated" / run["id"]).rglob("*.npz"))
    assert len(shards) == 2 * 3  # K passes × 3 shards, each stored once


def test_a_failed_shard_is_retried_on_another_replica(finished):
    for it in finished.run["iterations"][:2]:
        shards = it["generation"]["shards"]
        assert [s["index"] for s in shards] == [0, 1, 2]
        assert all(s["address"] != finished.dead for s in shards)
        assert shards[1]["attempts"] >= 2 and shards[0]["attempts"] == shards[2]["attempts"] == 1


def test_events_narrate_the_run(finished):
    events = finished.events
    kinds = [kind for _, kind, _ in events]
    assert kinds[-1] == "finished" and events[-1][2]["status"] == "completed"
    stages = [(d["stage"], d["iteration"]) for _, kind, d in events if kind == "stage"]
    assert stages == [("prepare", 0), ("train_student", 0), ("generate", 0), ("merge", 0), ("train_student", 1),
                      ("generate", 1), ("merge", 1), ("train_student", 2), ("report", 2)]
    assert kinds.count("epoch") >= 3 and kinds.count("shard") == 6 and kinds.count("dataset") == 2
    ids = [tuple(map(int, i.split("-"))) for i, _, _ in events]
    assert ids == sorted(ids)
    # a reconnecting client (EventSource sends Last-Event-ID) gets exactly what it missed
    url = f"/runs/{finished.run['id']}/events"
    with finished.http.stream("GET", url, headers={"Last-Event-ID": events[4][0]}) as response:
        assert read_events(response) == events[5:]


def test_artifacts_and_metrics(finished):
    run, http = finished.run, finished.http
    final = run["datasets"][-1]
    text = http.get(f"/artifacts/datasets/{final}").text
    assert len(text.splitlines()) == run["iterations"][-1]["dataset_stats"]["sequences"]
    _, info = load_checkpoint(http.get(f"/artifacts/runs/{run['id']}/checkpoints/2").content)
    assert info.dataset_version == final and info.model_config.dim == 16
    assert http.get(f"/artifacts/runs/{run['id']}/checkpoints/2", params={"role": "teacher"}).status_code == 404
    metrics = http.get("/metrics").text
    assert 'rsir_runs{status="completed"} 1.0' in metrics and "rsir_dataset_versions 3.0" in metrics
    assert "rsir_generation_shard_attempts_total 8.0" in metrics  # 6 shards, 2 of them retried once


def assert_inside(cell: Any, box: Any, width: int) -> None:
    """``cell`` is drawn whole inside ``box`` and the viewport (not cut off at either edge)."""
    inner, outer = cell.bounding_box(), box.bounding_box()
    assert inner["x"] + inner["width"] <= min(outer["x"] + outer["width"], width) + 0.5, (inner, outer)


def overlapping_labels(page: Any, chart: str) -> list[tuple[str, str]]:
    """Pairs of a chart's text labels whose drawn boxes intersect."""
    boxes = page.eval_on_selector_all(f"{chart} svg text", """els => els.map(e => {
        const b = e.getBoundingClientRect(); return [e.textContent, b.left, b.top, b.right, b.bottom]; })""")
    return [(a[0], b[0]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
            if a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5 and a[2] < b[4] - 0.5 and b[2] < a[4] - 0.5]


def assert_one_iteration_named(page: Any) -> None:
    """Right after a stage change the run document names the new stage while the stored progress still
    describes the previous one: the summary and the progress line must not name different iterations."""
    state = """([stage, iteration, progress]) => {
        run = {...run, status: "running", finished_at: null, stage, iteration, progress};
        render();
        return [$("#summary").textContent, $("#progress").textContent]; }"""
    stale = {"stage": "merge", "iteration": 1, "shards": {"0": {"rows": 240, "emitted": 200, "done": True}},
             "shard_count": 1}
    summary, progress = page.evaluate(state, ["train_student", 2, stale])
    assert "iteration 2 of 2" in summary and "iteration 1" not in progress + summary and "shard" not in progress
    live = {"stage": "train_student", "iteration": 2, "role": "student", "epoch": 3, "max_epochs": 5, "loss": 1.5,
            "valid": {"ndcg@20": 0.25}, "best_epoch": 3}
    summary, progress = page.evaluate(state, ["train_student", 2, live])
    assert "iteration 2 of 2" in summary and progress.startswith("student epoch 3 (at most 5)"), progress


@pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("RSIR_REQUIRE_BROWSER"),
    reason=f"{CHROMIUM} missing: apt-get install -y chromium (CI sets RSIR_REQUIRE_BROWSER, so it never skips there)",
)
def test_dashboard_renders_the_run_in_headless_chromium(finished, tmp_path):
    from playwright.sync_api import sync_playwright

    run = finished.run
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{finished.http.base_url}/")
            page.wait_for_selector(f"a[href='/ui/runs/{run['id']}']")
            page.screenshot(path=str(tmp_path / "runs.png"), full_page=True)
            row = page.locator("#runs tbody tr", has=page.locator(f"a[href='/ui/runs/{run['id']}']"))
            selected = run["iterations"][run["selected"]]["student"]["test"]["ndcg@10"]
            assert row.locator("td.selected").text_content() == str(run["selected"])
            assert row.locator("td.score").text_content() == f"{selected:.4f}"  # the selected one's, not the last
            assert_inside(row.locator("td.created"), page.locator("#runs").locator(".."), 1400)
            page.click(f"a[href='/ui/runs/{run['id']}']")
            page.wait_for_function("document.querySelectorAll('#chart-metrics circle.pt').length === 6", timeout=15000)
            points = page.eval_on_selector_all(
                "#chart-metrics circle.pt", "els => els.map(e => [e.dataset.series, +e.dataset.x, +e.dataset.y])")
            expected = [[name, it["iteration"], it["student"]["test"][metric]] for name, metric in
                        (("NDCG@10", "ndcg@10"), ("Recall@10", "recall@10")) for it in run["iterations"]]
            assert points == expected  # the values drawn are the metrics, digit for digit
            bars = page.eval_on_selector_all("#chart-generation rect.bar", "els => els.map(e => +e.dataset.y)")
            assert len(bars) == 2 * 3 and sum(bars) == 2 * 240  # every row stopped for exactly one reason
            assert page.locator("#chart-sequences circle.pt").count() == 3
            page.wait_for_selector("#log div[data-type=finished]")  # the event stream replayed into the page
            lines = page.eval_on_selector_all("#log div", "els => els.map(e => [e.textContent, e.scrollWidth <= "
                                                          "e.clientWidth])")
            assert all("{" not in text and fits for text, fits in lines), lines  # sentences, none cut off
            assert any(text.endswith("run completed") for text, _ in lines), lines
            for chart in ("metrics", "generation", "sequences", "density", "apen"):
                assert not overlapping_labels(page, f"#chart-{chart}"), chart
            kept = [f"{it['iteration']}→{it['iteration'] + 1}: kept {it['merge']['added']} of "
                    f"{it['generation']['stats']['rows']} rows "
                    f"({100 * it['merge']['added'] / it['generation']['stats']['rows']:.0f}%)"
                    for it in run["iterations"][:2]]
            assert all(k in page.text_content("#kept") for k in kept), page.text_content("#kept")
            assert "only tracks length" in page.text_content("#chart-apen + p")
            assert page.locator("#iterations tbody tr").count() == 3
            extras = page.eval_on_selector_all("#iterations td.extras", "els => els.map(e => e.textContent)")
            inserted = [it["student"]["insertion_sequences"] for it in run["iterations"]]
            assert extras == ["–"] + [f"+{n} Insertion" for n in inserted[1:]]
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            page.wait_for_function("pending === null")  # no refresh in flight to redraw the page under the check
            assert_one_iteration_named(page)
        finally:
            browser.close()
    assert not errors, errors
    assert shot.stat().st_size > 10_000
    if target := os.environ.get("RSIR_DASHBOARD_PNG"):  # e.g. docs/dashboard.png, to refresh the README's picture
        shutil.copy(shot, target)


@pytest.mark.skipif(
    not Path(CHROMIUM).exists() and not os.environ.get("RSIR_REQUIRE_BROWSER"),
    reason=f"{CHROMIUM} missing: apt-get install -y chromium (CI sets RSIR_REQUIRE_BROWSER, so it never skips there)",
)
def test_dashboard_starts_a_run_from_a_named_recipe(finished):
    """The form sends the same POST /runs a script would: a recipe by name, empty fields left to it."""
    from playwright.sync_api import sync_playwright

    version = finished.run["datasets"][0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{finished.http.base_url}/")
            recipes = page.eval_on_selector_all("#new-run select[name=recipe] option", "els => els.map(e => e.value)")
            assert recipes == ["", *sorted(r["name"] for r in finished.http.get("/recipes").json())]
            page.select_option("#new-run select[name=recipe]", "paper")
            assert page.text_content("#recipe-summary").startswith("The RSIR paper's settings")
            page.select_option("#new-run select[name=dataset]", version)  # the uploaded dataset is offered
            page.fill("#new-run input[name=iterations]", "0")
            page.click("#new-run button[type=submit]")
            page.wait_for_url("**/ui/runs/r*")
            run_id = page.url.rsplit("/", 1)[1]
            assert "recipe paper" in page.text_content("#recipe")
        finally:
            browser.close()
    finished.http.post(f"/runs/{run_id}/cancel")  # the run itself is not this test's subject
    run = finished.http.get(f"/runs/{run_id}").json()
    assert run["spec"] == {"dataset": version, "recipe": "paper", "iterations": 0} and run["recipe"] == "paper"
    assert run["config"]["train"]["loss"] == "sampled" and run["iterations_total"] == 0
    assert not errors, errors
