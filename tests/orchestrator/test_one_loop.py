"""One loop: ``rsir run``, ``POST /runs`` (trainer and generators as real processes) and the bench
produce the same dataset versions and the same test metrics, hash for hash, from one configuration.
The configuration exercises every piece of shared semantics at once: a real-data stage for the
students, the "student after a real-data stage" teacher, students warm-started from the previous
student, Insertion beside the synthetic data, selection on validation and the paired test. All
three run at one torch thread, as the test stack's services do (``services.testing.stack``): the
order in which bf16 products are summed, and so the last bits of a model, depend on the thread
count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch
from orchestrator_helpers import ROOT

from rsir.cli import main
from rsir.recipes import RunConfig, load_recipe
from services.orchestrator.schemas import RunSpec

SETTINGS = {
    "iterations": 2, "seed": 3, "warm_start": True,
    "student": {"name": "sasrec", "dim": 16, "layers": 1, "heads": 2, "dropout": 0.2, "max_len": 20},
    "train": {"loss": "ce", "negatives": 16, "batch_size": 128, "lr": 0.01, "patience": 2, "max_epochs": 3,
              "synthetic_weight": 0.5, "finetune_real": True, "finetune_lr_scale": 0.3, "insertion_ratio": 1.0,
              "device": "cpu"},
    "generation": {"tau": 10, "p": 0.5, "m": 2, "max_len": 20},
    "teacher": {"real_stage": True},
}


def _toml(settings: dict) -> str:
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items() if not isinstance(v, dict)]
    for table, values in settings.items():
        if isinstance(values, dict):
            lines += [f"\n[{table}]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def test_cli_service_and_bench_agree_hash_for_hash(client, tmp_path):
    recipe = tmp_path / "one-loop.toml"
    recipe.write_text(_toml(SETTINGS))
    config = RunConfig.from_dict(load_recipe(str(recipe)))
    # the API resolves the same configuration: the paper recipe with every setting it names given
    spec = RunSpec.model_validate({"dataset": "synthetic", "recipe": "paper", **SETTINGS})
    assert spec.resolve()[1] == config

    created = client.post("/runs", json=spec.model_dump(mode="json", exclude_none=True))
    assert created.status_code == 201, created.text

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["run", "--data", "synthetic", "--recipe", str(recipe), "--out", str(tmp_path / "cli"), "-q"]) == 0
    finally:
        torch.set_num_threads(threads)
    cli = json.loads((tmp_path / "cli" / "report.json").read_text())

    bench = subprocess.run([sys.executable, str(ROOT / "bench" / "rsir_table.py"), "--datasets", "synthetic",
                            "--seeds", "3", "--recipe", str(recipe), "--tag", "one-loop", "--out",
                            str(tmp_path / "bench")], capture_output=True, text=True, timeout=600,
                           env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert bench.returncode == 0, bench.stderr[-3000:]
    rows = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "bench").glob("*.json")}

    deadline = time.monotonic() + 600
    while (run := client.get(created.json()["url"]).json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, run
        time.sleep(0.5)
    assert run["status"] == "completed", run["error"]

    assert cli["datasets"] == run["datasets"] and len(set(run["datasets"])) == 3
    assert cli["selected"] == run["selected"] and cli["stopped_by"] == run["stopped_by"] == "iterations"
    for k, (local, served) in enumerate(zip(cli["iterations"], run["iterations"], strict=True)):
        assert local["student"]["test"] == served["student"]["test"], k
        assert local["student"]["valid"] == served["student"]["valid"], k
        assert (local["teacher"] is None) == (served["teacher"] is None), k
        assert local["merge"] == served["merge"], k
    assert cli["iterations"][0]["teacher"] is not None  # D_0's student had no real-data stage: its teacher did
    assert cli["significance"] == run["significance"]

    stem = "synthetic-sasrec-strong-seed3"
    assert rows[f"{stem}-base-one-loop"]["test"] == cli["iterations"][0]["student"]["test"]
    for k in (1, 2):
        row = rows[f"{stem}-rsir{k}-one-loop"]
        assert row["dataset_version"] == cli["datasets"][k]
        assert row["test"] == cli["iterations"][k]["student"]["test"]
