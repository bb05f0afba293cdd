"""What a run records: the ``Run`` model and its document, dataset statistics, the report.

A run holds the request as sent (``spec``), the configuration it resolved to (``recipe`` and
``config``, frozen at submission so a later change of a recipe file does not change a queued run),
its lifecycle (status, times, error, resumes) and where the recursion stands (``rsir.recursion.
RunState``). Its document, the JSON the API serves and Redis holds, is the same fields flat.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field, fields
from typing import Any

from rsir.recipes import RunConfig
from rsir.recursion import RunState
from services.orchestrator.schemas import RunSpec
from services.orchestrator.store.records import public

STAT_FIELDS = ("users", "synthetic_sequences", "items", "interactions", "avg_length", "density", "apen",
               "apen_reciprocal")


@dataclass
class Run:
    """A run as the orchestrator keeps it."""

    id: str
    spec: dict[str, Any]
    recipe: str
    config: dict[str, Any]
    name: str | None = None
    status: str = "queued"
    created_at: float = field(default_factory=time.time)
    updated_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    report: dict[str, str] | None = None
    resumes: int = 0
    retries: int = 0  # service calls tried again, drawn from the run's budget (ORCHESTRATOR_RETRY_BUDGET)
    state: RunState = field(default_factory=RunState)

    def run_config(self) -> RunConfig:
        return RunConfig.from_dict(self.config)

    def to_doc(self) -> dict[str, Any]:
        """The run's document: its fields with the state's flat beside them."""
        doc = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "state"}
        return {**doc, "iterations_total": self.config["iterations"], **self.state.to_dict(),
                "datasets": self.state.datasets}

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Run:
        return cls(**{f.name: doc[f.name] for f in fields(cls) if f.name != "state" and f.name in doc},
                   state=RunState.from_dict(doc))


def run_document(spec: RunSpec, recipe: str, config: RunConfig) -> dict[str, Any]:
    """A new run's document: queued, at its first stage."""
    run = Run(f"r{uuid.uuid4().hex[:12]}", spec.model_dump(exclude_none=True), recipe, config.to_dict(),
              name=spec.name)
    run.updated_at = run.created_at
    return run.to_doc()


def dataset_stats(record: dict[str, Any]) -> dict[str, Any]:
    """The statistics of a dataset version that a run shows per iteration."""
    stats = {name: record["stats"].get(name) for name in STAT_FIELDS}
    stats["sequences"] = (stats["users"] or 0) + (stats["synthetic_sequences"] or 0)
    return stats


def build_report(run: Run) -> dict[str, Any]:
    """The run report stored in object storage: the run document as it ends, minus live fields and
    storage URIs (the report is served to readers as it is)."""
    skip = {"report", "updated_at"}
    return {"format": "rsir-run-report/1", "generated_at": time.time(),
            **{k: v for k, v in public(run.to_doc()).items() if k not in skip}}
