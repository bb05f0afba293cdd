"""What a run records: its document, a row per iteration, the paired significance test, the report.

The trainer returns aggregate metrics only, so the paired test (selected iteration vs iteration 0,
on the same real users) re-ranks the test items here with the two stored student checkpoints. It
is one full-ranking pass per model, cheap next to training; a run can switch it off.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import Any

from rsir.checkpoint import load_checkpoint
from rsir.evaluation import evaluate, paired_test
from services.orchestrator.schemas import RunSpec
from services.orchestrator.store import DatasetStore
from services.trainer.convert import TrainOutcome

STAT_FIELDS = ("users", "synthetic_sequences", "items", "interactions", "avg_length", "density", "apen",
               "apen_reciprocal")
SIGNIFICANCE_METRICS = ("recall@10", "ndcg@10")


def run_document(spec: RunSpec) -> dict[str, Any]:
    """A new run: queued, at its first stage. The spec is stored as JSON (``tau`` inf as "Infinity")."""
    now = time.time()
    return {"id": f"r{uuid.uuid4().hex[:12]}", "name": spec.name, "status": "queued", "stage": "prepare",
            "iteration": 0, "iterations_total": spec.iterations, "spec": json.loads(spec.model_dump_json()),
            "created_at": now, "updated_at": now, "started_at": None, "finished_at": None, "error": None,
            "datasets": [], "iterations": [], "selected": None, "significance": None, "stopped_by": None,
            "report": None, "resumes": 0}


def outcome_json(outcome: TrainOutcome) -> dict[str, Any]:
    return dataclasses.asdict(outcome)


def dataset_summary(iteration: int, record: dict[str, Any]) -> dict[str, Any]:
    """The row of iteration k before its student is trained: the dataset D_k and its statistics."""
    stats = {name: record["stats"].get(name) for name in STAT_FIELDS}
    stats["sequences"] = (stats["users"] or 0) + (stats["synthetic_sequences"] or 0)
    return {"iteration": iteration, "dataset": record["version"], "dataset_stats": stats, "student": None,
            "teacher": None, "generation": None, "merge": None, "timings": {}}


def significance(store: DatasetStore, run: dict[str, Any]) -> dict[str, Any]:
    """Paired t-test and Wilcoxon test of the selected iteration's student against iteration 0's."""
    base = store.load_dataset(run["datasets"][0])  # the real users (and their test items) never change
    selected = run["selected"]
    results = []
    for k in (0, selected):
        ref = run["iterations"][k]["student"]["checkpoint"]
        model, _ = load_checkpoint(store.objects.get_uri(ref["uri"], ref["sha256"]))
        results.append(evaluate(model, base, "test"))
    return {"baseline": 0, "iteration": selected,
            "tests": {m: paired_test(results[0], results[1], m) for m in SIGNIFICANCE_METRICS}}


def build_report(run: dict[str, Any]) -> dict[str, Any]:
    """The run report stored in object storage: the run document as it ends, minus live fields."""
    skip = {"report", "updated_at"}
    return {"format": "rsir-run-report/1", "generated_at": time.time(),
            **{k: v for k, v in run.items() if k not in skip}}
