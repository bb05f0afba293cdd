"""bench/records.py: a paired test pooled over seeds is the same whether every seed's ranks are on
disk or some seeds ran in an earlier session that left only their recorded hit counts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import records

TESTS = ("mean_diff", "relative", "p_ttest", "p_wilcoxon")


def _row(seed: int, method: str) -> dict:
    row = {"dataset": "toys", "model": "sasrec", "setting": "paper", "seed": seed, "method": method, "tag": ""}
    return {**row, "iteration": 1} if method == "rsir" else row


@pytest.fixture
def rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict], list[dict]]:
    monkeypatch.setattr(records, "RANKS", tmp_path / "ranks")
    monkeypatch.setattr(records, "PAIRED_TESTS", tmp_path / "paired-tests.json")
    monkeypatch.setattr(records, "_cache", None)
    monkeypatch.setattr(records, "_used", {})
    records.RANKS.mkdir()
    rng = np.random.default_rng(0)
    before, after = [_row(s, "base") for s in range(3)], [_row(s, "rsir") for s in range(3)]
    for row in before + after:
        np.save(records.RANKS / f"{records.name(row)}.npy", rng.integers(0, 25, size=400))
    return before, after


def _new_session() -> None:
    records._cache = None
    records._used.clear()


def test_seeds_from_an_earlier_session_pool_with_todays(rows: tuple[list[dict], list[dict]]) -> None:
    before, after = rows
    everything = records.paired(before, after)
    _new_session()
    records.paired(before[:2], after[:2])  # an earlier session ran seeds 0 and 1 ...
    records.save_paired_tests()
    for row in before[:2] + after[:2]:  # ... and its ranks did not survive
        (records.RANKS / f"{records.name(row)}.npy").unlink()
    _new_session()
    pooled = records.paired(before, after)  # seed 2's ranks, seeds 0 and 1 as recorded
    assert {k: pooled[k] for k in TESTS} == pytest.approx({k: everything[k] for k in TESTS})
    records.save_paired_tests()
    saved = json.loads(records.PAIRED_TESTS.read_text())
    assert all("hits" in saved[f"{records.name(b)} → {records.name(a)}"] for b, a in zip(before, after, strict=True))


def test_a_seed_with_neither_ranks_nor_counts_is_an_error(rows: tuple[list[dict], list[dict]]) -> None:
    before, after = rows
    (records.RANKS / f"{records.name(after[1])}.npy").unlink()
    with pytest.raises(FileNotFoundError, match="seed1-rsir1"):
        records.paired(before, after)
