"""Reading benchmark records back: the JSON rows under bench/results, the per-user test ranks that
bench/rsir_table.py keeps beside them, and the paired tests run on those ranks.

The ranks (``bench/results/rsir/ranks/<row>.npy``) are regenerable and stay out of git. A paired
test computed from them is recorded in ``bench/results/paired-tests.json``, keyed by the two
sides' rows, so that a clone without the ranks reproduces every p-value from that file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rsir import jsonio
from rsir.evaluation import EvalResult, paired_test

RESULTS = Path(__file__).resolve().parent / "results"
RANKS = RESULTS / "rsir" / "ranks"
PAIRED_TESTS = RESULTS / "paired-tests.json"

_cache: dict[str, dict] | None = None  # the recorded tests, read on first use
_used: dict[str, dict] = {}  # the tests this process asked for, what save_paired_tests writes


def load(pattern: str) -> list[dict]:
    """Every JSON record under bench/results matching ``pattern``, in file-name order. A row's
    generation settings read back as numbers (τ = ∞ is stored as ``"inf"``)."""
    rows = [jsonio.loads(p.read_text()) for p in sorted(RESULTS.glob(pattern))]
    for row in rows:
        if isinstance(row, dict) and isinstance(row.get("generation"), dict):
            row["generation"] = {k: jsonio.number(v) for k, v in row["generation"].items()}
    return rows


def variant(row: dict) -> str:
    """A result's method name as its file names it: ``rsir1-w0.5``, ``insertion``, ``base``."""
    return row["method"] + (str(row["iteration"]) if row["method"] == "rsir" else "") + row.get("tag", "")


def name(row: dict) -> str:
    """The file stem of a row: ``toys-sasrec-strong-seed0-rsir1-w0.5``."""
    return f"{row['dataset']}-{row['model']}-{row['setting']}-seed{row['seed']}-{variant(row)}"


def ranks(rows: list[dict]) -> EvalResult:
    """Per-user test ranks of result rows, users of all their seeds pooled (for paired tests)."""
    return EvalResult(np.concatenate([np.load(RANKS / f"{name(r)}.npy") for r in rows]))


def paired(before: list[dict], after: list[dict]) -> dict[str, float]:
    """``rsir.evaluation.paired_test`` of ``after`` against ``before`` (rows paired in order, users of
    all seeds pooled): computed from the ranks when all of them are present, else read from
    ``paired-tests.json``."""
    global _cache
    key = " + ".join(map(name, before)) + " → " + " + ".join(map(name, after))
    if all((RANKS / f"{name(r)}.npy").exists() for r in before + after):
        _used[key] = paired_test(ranks(before), ranks(after))
        return _used[key]
    if _cache is None:
        _cache = jsonio.loads(PAIRED_TESTS.read_text()) if PAIRED_TESTS.exists() else {}
    if key not in _cache:
        missing = sorted(name(r) for r in before + after if not (RANKS / f"{name(r)}.npy").exists())
        raise FileNotFoundError(f"no ranks for {', '.join(missing)} and no recorded test {key!r} in "
                                f"{PAIRED_TESTS}: rerun bench/rsir_table.py with those rows' flags")
    _used[key] = {k: jsonio.number(v) for k, v in _cache[key].items()}
    return _used[key]


def save_paired_tests() -> None:
    """Record every paired test asked for since the start (sorted by key) in ``paired-tests.json``."""
    jsonio.write(PAIRED_TESTS, dict(sorted(_used.items())))
