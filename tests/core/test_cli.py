"""The rsir command end to end on synthetic data and files."""

from __future__ import annotations

import json

import numpy as np

from rsir.cli import main
from rsir.data import write_sequences


def test_train_then_evaluate(tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["train", "--data", "synthetic", "--epochs", "2", "--dim", "16", "--out", str(out), "-q"])
    assert code == 0
    report = json.loads((out / "synthetic-0-sasrec-seed0.json").read_text())
    assert report["epochs"] == 2 and set(report["test"]) >= {"ndcg@10", "recall@10"}
    printed = capsys.readouterr().out
    assert "recall@10" in printed and "test" in printed
    code = main(["evaluate", str(out / "synthetic-0-sasrec-seed0.pt"), "--data", "synthetic",
                 "--json", str(tmp_path / "e.json")])
    assert code == 0
    again = json.loads((tmp_path / "e.json").read_text())
    assert again["test"]["recall@10"] == report["test"]["recall@10"]


def test_bad_flag_values_are_one_line_errors(capsys):
    assert main(["train", "--data", "synthetic", "--dropout", "2", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "rsir: error: dropout: must be in [0, 1), got 2.0"
    assert main(["train", "--data", "nowhere.txt", "-q"]) == 2
    assert "neither a benchmark" in capsys.readouterr().err


def test_evaluate_refuses_a_checkpoint_of_another_catalogue(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--data", "synthetic", "--epochs", "1", "--dim", "8", "--out", str(out), "-q"]) == 0
    other = tmp_path / "other.txt"
    write_sequences(other, np.arange(1, 4), [np.array([1, 2, 3])] * 3)
    assert main(["evaluate", str(out / "synthetic-0-sasrec-seed0.pt"), "--data", str(other)]) == 2
    assert "knows 400 items" in capsys.readouterr().err


def test_convert_and_stats(tmp_path, capsys):
    for suffix in (".csv", ".parquet", ".txt", ".npz"):
        target = tmp_path / f"s{suffix}"
        assert main(["data", "convert", "synthetic", str(target)]) == 0
        assert target.exists()
    assert main(["data", "stats", "--data", str(tmp_path / "s.npz")]) == 0
    stats = json.loads(capsys.readouterr().out.split("\n", 4)[-1])
    assert stats["users"] == 2000 and stats["density"] > 0


def test_download_verifies_checksum(tmp_path, capsys, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "Beauty.txt").write_text("1 2 3 4\n")  # not the real file: the checksum must fail
    monkeypatch.setenv("RSIR_DATA_URL", mirror.as_uri())
    assert main(["data", "download", "beauty", "--data-dir", str(tmp_path / "data")]) == 2
    assert "checksum mismatch" in capsys.readouterr().err
    assert not (tmp_path / "data" / "beauty.txt").exists()


def test_run_generate_and_augment(tmp_path, capsys):
    out = tmp_path / "rsir"
    code = main(["run", "--data", "synthetic", "--iterations", "1", "--epochs", "2", "--dim", "16",
                 "--tau", "10", "--m", "2", "--finetune-real", "--out", str(out), "-q"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert [r["iteration"] for r in report["iterations"]] == [0, 1]
    assert [type(r["student"]["finetune_kept"]) for r in report["iterations"]] == [type(None), bool]
    assert (out / "iterations.png").stat().st_size > 1000
    assert "chosen on validation" in capsys.readouterr().out
    assert main(["generate", str(out / "selected.pt"), "--data", "synthetic", "--tau", "inf", "--m", "1",
                 "--out", str(tmp_path / "g.npz")]) == 0
    assert json.loads(capsys.readouterr().out)["added"] > 0
    assert main(["train", "--data", str(tmp_path / "g.npz"), "--epochs", "1", "--dim", "8", "--finetune-real",
                 "--out", str(tmp_path / "ft"), "-q"]) == 0
    assert "real-data stage" in capsys.readouterr().out
    assert isinstance(json.loads(next((tmp_path / "ft").glob("*.json")).read_text())["finetune_kept"], bool)
    assert main(["augment", "--data", "synthetic", "--method", "insertion", "--count", "50",
                 "--out", str(tmp_path / "a.txt")]) == 0
    assert len((tmp_path / "a.txt").read_text().splitlines()) == 2050


def test_generate_rejects_bad_settings(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--data", "synthetic", "--epochs", "1", "--dim", "8", "--out", str(out), "-q"]) == 0
    capsys.readouterr()
    ckpt = str(out / "synthetic-0-sasrec-seed0.pt")
    for flags, message in ((["--tau", "0"], "tau"), (["--p", "1.5"], "p: must be in [0, 1]"),
                           (["--m", "0"], "m: must be in [1, 1000]")):
        assert main(["generate", ckpt, "--data", "synthetic", "--out", str(tmp_path / "x.npz"), *flags]) == 2
        assert message in capsys.readouterr().err
