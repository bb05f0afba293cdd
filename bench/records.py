"""Reading benchmark records back: the JSON rows under bench/results and the per-user test ranks
that bench/rsir_table.py keeps beside them (for paired tests that pool users over seeds)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rsir.evaluation import EvalResult

RESULTS = Path(__file__).resolve().parent / "results"


def load(pattern: str) -> list[dict]:
    """Every JSON record under bench/results matching ``pattern``, in file-name order."""
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob(pattern))]


def variant(row: dict) -> str:
    """A result's method name as its file names it: ``rsir1-w0.5``, ``insertion``, ``base``."""
    return row["method"] + (str(row["iteration"]) if row["method"] == "rsir" else "") + row.get("tag", "")


def ranks(rows: list[dict]) -> EvalResult:
    """Per-user test ranks of result rows, users of all their seeds pooled (for paired tests)."""
    return EvalResult(np.concatenate([np.load(RESULTS / "rsir" / "ranks" / (
        f"{r['dataset']}-{r['model']}-{r['setting']}-seed{r['seed']}-{variant(r)}.npy")) for r in rows]))
