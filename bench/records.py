"""Reading benchmark records back: the JSON rows under bench/results, the per-user test ranks that
bench/rsir_table.py keeps beside them, and the paired tests run on those ranks.

The ranks (``bench/results/rsir/ranks/<row>.npy``) are regenerable and stay out of git. A paired
test computed from them is recorded in ``bench/results/paired-tests.json``, keyed by the two
sides' rows, so that a clone without the ranks reproduces every p-value from that file; each seed's
R@10 hit counts are recorded as well, so seeds run in different sessions can still be pooled.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np

from rsir import jsonio
from rsir.evaluation import EvalResult, paired_test

RESULTS = Path(__file__).resolve().parent / "results"
RANKS = RESULTS / "rsir" / "ranks"
PAIRED_TESTS = RESULTS / "paired-tests.json"

METRIC = "recall@10"  # what every paired test here compares
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


def scaled_tag(tag: str, scale: float) -> str:
    """The tag of baselines that added ``scale`` times RSIR's count: ``-x<scale>`` right after the
    synthetic weight (``-w0.5-ft`` → ``-w0.5-x2-ft``), as ``bench/rsir_table.py --baseline-scale`` names them."""
    return re.sub(r"^(-w[\d.]+)?", rf"\g<1>-x{scale:g}", tag, count=1)


@functools.cache
def _rank_file(stem: str) -> np.ndarray:
    return np.load(RANKS / f"{stem}.npy")


def ranks(rows: list[dict]) -> EvalResult:
    """Per-user test ranks of result rows, users of all their seeds pooled (for paired tests)."""
    return EvalResult(np.concatenate([_rank_file(name(r)) for r in rows]))


def _key(before: list[dict], after: list[dict]) -> str:
    return " + ".join(map(name, before)) + " → " + " + ".join(map(name, after))


def _recorded() -> dict[str, dict]:
    global _cache
    if _cache is None:
        _cache = jsonio.loads(PAIRED_TESTS.read_text()) if PAIRED_TESTS.exists() else {}
    return _cache


def _hits(before: EvalResult, after: EvalResult) -> list[int]:
    """Users by R@10 hit [neither, after only, before only, both]: all a test of R@10 needs, so a
    pooled test can be rebuilt from each seed's counts when some seeds' ranks are gone."""
    a, b = before.per_user(METRIC).astype(bool), after.per_user(METRIC).astype(bool)
    return [int((~a & ~b).sum()), int((~a & b).sum()), int((a & ~b).sum()), int((a & b).sum())]


def _from_hits(hits: list[int]) -> tuple[EvalResult, EvalResult]:
    """Ranks that reproduce the counts of ``_hits`` (0 for a hit, past the cut-off for a miss)."""
    miss = int(METRIC.partition("@")[2])
    before = np.repeat([miss, miss, 0, 0], hits)
    after = np.repeat([miss, 0, miss, 0], hits)
    return EvalResult(before), EvalResult(after)


def _have_ranks(rows: list[dict]) -> bool:
    return all((RANKS / f"{name(r)}.npy").exists() for r in rows)


def _pair_hits(before: dict, after: dict) -> list[int] | None:
    """One seed's hit counts: from its ranks where present, else as recorded (then kept recorded)."""
    pair = _key([before], [after])
    hits = _hits(ranks([before]), ranks([after])) if _have_ranks([before, after]) else \
        _recorded().get(pair, {}).get("hits")
    if hits is not None:
        _used[pair] = {**_used.get(pair, {}), "hits": hits}
    return hits


def paired(before: list[dict], after: list[dict]) -> dict[str, float]:
    """``rsir.evaluation.paired_test`` of ``after`` against ``before`` (rows paired in order, users of
    all seeds pooled): computed from the ranks when all of them are present (recording each seed's
    hit counts too), else read from ``paired-tests.json``, else rebuilt from each seed's hit counts,
    from its ranks or as recorded (seeds run in different sessions pooled)."""
    key = _key(before, after)
    if _have_ranks(before + after):
        for b, a in zip(before, after, strict=True):
            _pair_hits(b, a)
        _used[key] = {**_used.get(key, {}), **paired_test(ranks(before), ranks(after), METRIC)}
        return _used[key]
    if "p_ttest" in _recorded().get(key, {}):
        _used[key] = {k: jsonio.number(v) for k, v in _recorded()[key].items()}
        return _used[key]
    hits = [h for b, a in zip(before, after, strict=True) if (h := _pair_hits(b, a)) is not None]
    if len(hits) == len(before):
        _used[key] = {**_used.get(key, {}), **paired_test(*_from_hits(np.sum(hits, axis=0).tolist()), METRIC)}
        return _used[key]
    missing = sorted(name(r) for r in before + after if not _have_ranks([r]))
    raise FileNotFoundError(f"no ranks for {', '.join(missing)} and no recorded test {key!r} in "
                            f"{PAIRED_TESTS}: rerun bench/rsir_table.py with those rows' flags")


def save_paired_tests() -> None:
    """Record every paired test asked for since the start (sorted by key) in ``paired-tests.json``."""
    jsonio.write(PAIRED_TESTS, dict(sorted(_used.items())))
