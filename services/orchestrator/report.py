"""What a run records: its document, the statistics of each dataset version, the report.

The document holds the request as sent (``spec``), the configuration it resolved to (``recipe`` and
``config``, frozen at submission so a later change of a recipe file does not change a queued run)
and the fields ``rsir.recursion.RunState`` owns (stage, iterations, selection, significance).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from rsir.recipes import RunConfig
from rsir.recursion import RunState
from services.orchestrator.schemas import RunSpec

STAT_FIELDS = ("users", "synthetic_sequences", "items", "interactions", "avg_length", "density", "apen",
               "apen_reciprocal")


def run_document(spec: RunSpec, recipe: str, config: RunConfig) -> dict[str, Any]:
    """A new run: queued, at its first stage."""
    now = time.time()
    return {"id": f"r{uuid.uuid4().hex[:12]}", "name": spec.name, "status": "queued",
            "iterations_total": config.iterations, "spec": spec.model_dump(exclude_none=True),
            "recipe": recipe, "config": config.to_dict(),
            "created_at": now, "updated_at": now, "started_at": None, "finished_at": None, "error": None,
            **RunState().to_dict(), "datasets": [], "report": None, "resumes": 0}


def dataset_stats(record: dict[str, Any]) -> dict[str, Any]:
    """The statistics of a dataset version that a run shows per iteration."""
    stats = {name: record["stats"].get(name) for name in STAT_FIELDS}
    stats["sequences"] = (stats["users"] or 0) + (stats["synthetic_sequences"] or 0)
    return stats


def build_report(run: dict[str, Any]) -> dict[str, Any]:
    """The run report stored in object storage: the run document as it ends, minus live fields."""
    skip = {"report", "updated_at"}
    return {"format": "rsir-run-report/1", "generated_at": time.time(),
            **{k: v for k, v in run.items() if k not in skip}}
