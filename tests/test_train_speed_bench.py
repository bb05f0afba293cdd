"""bench/train_speed.py on tiny data: the benchmark as RecBole's ``.inter`` file (order and counts
kept), ours timed through the public API, the JSON record; RecBole itself only where its venv exists
(the bench makes it; tests never do: it needs network and minutes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from rsir import jsonio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import train_speed
import train_speed_recbole as rb

LINES = ["1 1 2 3 4 5", "2 6 2 7 8 1 3", "3 9 1 4 2 6"]  # user item item ..., oldest first


@pytest.fixture
def sequences(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text("\n".join(LINES) + "\n")
    return path


def test_inter_file_keeps_every_interaction_in_order(sequences: Path, tmp_path: Path) -> None:
    counts = rb.sequences_to_inter(sequences, tmp_path / "data", "tiny")
    assert counts == {"users": 3, "items": 9, "interactions": 16}
    header, *rows = (tmp_path / "data" / "tiny" / "tiny.inter").read_text().splitlines()
    assert header == "user_id:token\titem_id:token\ttimestamp:float"
    by_user: dict[str, list[tuple[float, str]]] = {}
    for r in rows:
        user, item, stamp = r.split("\t")
        by_user.setdefault(user, []).append((float(stamp), item))
    for line in LINES:
        user, *items = line.split()
        # sorting by timestamp (RecBole's order: TO) gives back the file's order
        assert [item for _, item in sorted(by_user[user])] == items
    assert len({stamp for r in rows for stamp in [r.split("\t")[2]]}) == len(rows)


def test_inter_file_refuses_malformed_lines(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n2 x 4\n")
    with pytest.raises(rb.BenchError, match=r"bad.txt:2: expected 'user item item \.\.\.'"):
        rb.sequences_to_inter(bad, tmp_path / "data", "bad")


def test_recbole_stops_at_the_same_epoch_as_ours(tmp_path: Path) -> None:
    config = rb.recbole_config("tiny", tmp_path, dim=64, layers=2, heads=2, dropout=0.2, max_len=50,
                               batch_size=256, lr=1e-3, epochs=200, patience=10, seed=0, eval_batch_size=1024,
                               checkpoint_dir=tmp_path)
    assert config["stopping_step"] == 9  # RecBole stops after stopping_step + 1 epochs without a better score
    assert config["eval_args"] == {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user",
                                   "mode": "full"}
    assert config["loss_type"] == "CE" and config["train_neg_sample_args"] is None
    assert config["valid_metric"] == "NDCG@20" and config["inner_size"] == 256


def _args(data: Path, **overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {
        "data": str(data), "data_dir": None, "epochs": 1, "our_epochs": 2, "full": False, "max_epochs": 200,
        "patience": 10, "threads": 1, "concurrent": False, "systems": ["rsir"], "seed": 0,
        "recbole_venv": rb.DEFAULT_VENV, "work_dir": data.parent / "work", "tag": None, "device": "cpu"}
    return argparse.Namespace(**{**values, **overrides})


def test_ours_is_timed_and_recorded_as_strict_json(sequences: Path, tmp_path: Path) -> None:
    result = train_speed.run(_args(sequences))
    ours = result["runs"]["rsir"]
    assert ours["epochs"] == 2 and len(ours["epoch_seconds"]) == 2 and ours["stopped_by"] == "max_epochs"
    assert ours["time_to_early_stop"] is None  # a timing run never claims an early stop
    assert 0 < ours["train_seconds_per_epoch"] <= ours["seconds_per_epoch"]
    assert set(ours["test"]) == set(ours["test_unmasked"]) == {"recall@10", "ndcg@10", "recall@20", "ndcg@20"}
    assert ours["users"] == ours["test_users"] == 3 and ours["peak_rss_mb"] > 0
    assert ours["train_targets"] == 16 - 3 * 3  # each user loses validation and test, and has no target for its first
    assert ours["cpu_seconds_per_epoch"] > 0
    assert result["dataset"] == {"users": 3, "items": 9, "interactions": 16}
    path = tmp_path / "out.json"
    jsonio.write(path, result)
    assert jsonio.loads(path.read_text())["runs"]["rsir"]["config"]["train"]["batch_size"] == 256


def test_speedup_and_comparability_in_the_record(sequences: Path) -> None:
    seconds = {"train": [1.0, 1.0], "valid": [1.0, 1.0], "train_cpu": [0.5, 0.5], "valid_cpu": [0.5, 0.5]}
    counts = {"users": 3, "items": 9, "test_users": 3, "train_targets": 10}
    ours = train_speed.row("rsir", {}, 1, seconds, best_epoch=1, stopped_by="patience", fit_seconds=4.0,
                           peak_rss_mb=1.0, valid={}, test=dict.fromkeys(train_speed.METRICS, 0.1),
                           test_unmasked=dict.fromkeys(train_speed.METRICS, 0.05),
                           wall_clock=[0.0, 4.0], counts=counts)
    assert ours["seconds_per_epoch"] == 2.0 and ours["cpu_seconds_per_epoch"] == 1.0
    assert ours["time_to_early_stop"] == 4.0
    theirs = {**ours, "system": "recbole", "train_seconds_per_epoch": 30.0, "seconds_per_epoch": 40.0,
              "train_cpu_seconds_per_epoch": 25.0, "cpu_seconds_per_epoch": 30.0, "time_to_early_stop": None,
              "test_users": 2}
    out = train_speed.record(_args(sequences), {}, {"rsir": ours, "recbole": theirs})
    assert out["speedup"] == {"train_per_epoch": 30.0, "per_epoch_with_validation": 20.0,
                              "train_cpu_per_epoch": 50.0, "cpu_per_epoch_with_validation": 30.0,
                              "to_early_stop": None}
    assert out["comparable"] == {"users": True, "items": True, "test_users": False}
    assert jsonio.loads(jsonio.dumps(out))["speedup"]["to_early_stop"] is None


def test_output_is_named_by_data_and_mode(sequences: Path) -> None:
    assert train_speed.output_path(_args(sequences)).name == "train-speed-tiny-epochs1-1t.json"
    assert train_speed.output_path(_args(sequences, full=True, concurrent=True)).name == \
        "train-speed-tiny-full-1t-concurrent.json"
    assert train_speed.output_path(_args(sequences, device="cuda")).name == "train-speed-tiny-epochs1-cuda.json"


def test_recbole_is_refused_off_the_cpu(sequences: Path) -> None:
    with pytest.raises(rb.BenchError, match="CPU-only"):
        train_speed.run(_args(sequences, device="cuda", systems=["recbole", "rsir"]))


def ours_targets(lines: list[str]) -> int:
    """Next-item targets of one epoch over sequences of at most 51 training items: all of them here."""
    return sum(len(line.split()) - 1 - 3 for line in lines)


@pytest.mark.skipif(not rb.venv_ready(rb.DEFAULT_VENV),
                    reason="RecBole's venv is missing: `python bench/train_speed.py` makes it (needs network)")
def test_recbole_side_by_side_on_tiny_data(tmp_path: Path) -> None:
    lines = [" ".join([str(u)] + [str(1 + (u * 7 + i * 3) % 40) for i in range(8)]) for u in range(1, 61)]
    data = tmp_path / "small.txt"
    data.write_text("\n".join(lines) + "\n")
    result = train_speed.run(_args(data, systems=["rsir", "recbole"], our_epochs=1, concurrent=True))
    theirs = result["runs"]["recbole"]
    assert theirs["epochs"] == 1 and theirs["train_seconds_per_epoch"] > 0
    assert set(theirs["test"]) == set(theirs["test_unmasked"]) == set(train_speed.METRICS)
    # masking earlier items only removes competitors: never a worse rank
    assert all(theirs["test"][k] >= theirs["test_unmasked"][k] for k in train_speed.METRICS)
    assert result["comparable"] == {"users": True, "items": True, "test_users": True}
    assert result["speedup"]["train_per_epoch"] > 0
    assert theirs["train_targets"] == ours_targets(lines) == result["runs"]["rsir"]["train_targets"]
