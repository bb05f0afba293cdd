"""bench/scaling.py end to end at a tiny scale (the data stages, each in its own process), the JSON
record's structure and the plot; and the seeded beauty-like data it measures on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from rsir.datasets import SequenceDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from scaling import exponent
from scaling_data import MIN_COUNT, beauty_like, write_log

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_beauty_like_data_has_the_counts_and_reads_back_exactly(tmp_path):
    dataset, stamps = beauty_like(0.05, seed=3)
    assert (len(dataset), dataset.num_items, len(dataset.items)) == (1118, 605, 9925)
    assert dataset.sequences.lengths.min() >= MIN_COUNT
    assert np.bincount(dataset.items)[1:].min() >= MIN_COUNT
    assert np.all(np.diff(stamps)[np.diff(np.repeat(np.arange(len(dataset)), dataset.sequences.lengths)) == 0] > 0)
    write_log(dataset, stamps, tmp_path / "log.csv")
    assert SequenceDataset.read(tmp_path / "log.csv").version == dataset.version
    assert beauty_like(0.05, seed=3)[0].version == dataset.version


def test_exponent_is_the_log_log_slope():
    assert abs(exponent([1, 10, 100], [3, 30, 300]) - 1) < 1e-9
    assert abs(exponent([1e3, 1e4], [2.0, 200.0]) - 2) < 1e-9
    assert exponent([5], [1]) is None


def test_the_bench_runs_and_writes_its_record(tmp_path):
    out = tmp_path / "scaling.json"
    subprocess.run([sys.executable, str(BENCH / "scaling.py"), "--scales", "0.01", "0.03", "--stages", "convert",
                    "version", "--label", "tiny", "--out", str(out), "--cache", str(tmp_path / "cache")],
                   check=True, capture_output=True, timeout=120)
    run = json.loads(out.read_text())["runs"]["tiny"]
    assert set(run) >= {"date", "settings", "scales", "fits", "machine"}
    assert list(run["scales"]) == ["0.01x", "0.03x"]
    for row in run["scales"].values():
        assert row["data"]["interactions"] > 0
        assert row["convert"]["same_as_written"] is True
        for stage in ("convert", "version"):
            assert {"seconds", "cpu_seconds", "peak_mb", "setup_peak_mb"} <= set(row[stage])
    assert set(run["fits"]) == {"convert", "version"}
    assert all(isinstance(f["cpu"], float) and isinstance(f["wall"], float) for f in run["fits"].values())
    assert out.with_suffix(".png").stat().st_size > 10_000
