"""Training speed-ups held to accuracy: arms × seeds of one config, paired on per-user test ranks.

An *arm* is the config with some fields overridden, optionally on the library as it was at a git
revision: ``before@74d39ca:`` is the config on that commit's code, ``lr2:lr=2e-3`` the current code
with another learning rate. The first arm is the baseline. Each (arm, seed) trains to early stop in
a process of its own (its peak memory is its own; a revision's library comes first on its path) and
records its epoch history, time to the best epoch and to the stop, peak memory and test metrics; its
per-user test ranks go to ``bench/cache`` (regenerable, out of git), and every other arm is compared
with the baseline on the same users and seed (paired t-test and Wilcoxon on Recall@10 and NDCG@10),
per seed and pooled. A finished (arm, seed) is reused, so an interrupted sweep resumes.

Usage: ``python bench/fast_training.py --arms before@74d39ca: after: --seeds 0 1 2 --threads 1``
(needs ``RSIR_DATA_DIR`` or ``--data-dir``) → ``bench/results/fast-training-<data>.json``; one
epoch of another backbone: ``--arms "before-hstu@74d39ca:name='hstu',max_epochs=1"
"after-hstu:name='hstu',max_epochs=1" --seeds 0 --out bench/results/fast-training-epoch-hstu.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
import tomllib
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from rsir import jsonio
from rsir.config import ModelConfig, TrainConfig, from_dict
from rsir.evaluation import EvalResult, paired_test

ROOT = Path(__file__).resolve().parent
MODEL_FIELDS = {f.name for f in fields(ModelConfig)}
METRICS = ("recall@10", "ndcg@10")


def parse_arm(text: str) -> tuple[str, str | None, dict[str, Any]]:
    """``name[@rev]:key=value,key=value`` → (name, rev, overrides); values are TOML (``lr=2e-3``)."""
    head, _, spec = text.partition(":")
    name, _, rev = head.partition("@")
    pairs = [p for p in spec.split(",") if p]
    return name, rev or None, tomllib.loads("\n".join(pairs)) if pairs else {}


def tree(rev: str) -> Path:
    """The library at git revision ``rev``, unpacked once under bench/cache/trees."""
    commit = subprocess.run(["git", "rev-parse", rev], cwd=ROOT.parent, check=True, capture_output=True,
                            text=True).stdout.strip()
    where = ROOT / "cache" / "trees" / commit[:12]
    if not (where / "rsir").is_dir():
        where.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", commit, "rsir"], cwd=ROOT.parent, check=True,
                                 capture_output=True).stdout
        tar_path = where / "rsir.tar"
        tar_path.write_bytes(archive)
        with tarfile.open(tar_path) as tar:
            tar.extractall(where, filter="data")
        tar_path.unlink()
    return where


def worker(job: dict[str, Any]) -> None:
    """Train one (arm, seed) in this process and write its row and ranks (run by ``run_arm``)."""
    import torch

    from rsir.evaluation import evaluate
    from rsir.resources import machine, peak_memory_mb
    from rsir.sources import load_dataset
    from rsir.training import train

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    model_config, train_config = from_dict(ModelConfig, job["model"]), from_dict(TrainConfig, job["train"])
    dataset = load_dataset(job["data"], job["data_dir"])
    start, cpu = time.perf_counter(), time.process_time()
    result = train(dataset, model_config, train_config, progress=False)
    cpu_seconds = time.process_time() - cpu  # every thread of this process: the work, whatever the machine's load
    test = evaluate(result.model, dataset, "test")
    np.save(job["ranks"], test.ranks)
    history = [{"epoch": r.epoch, "loss": r.loss, "valid_ndcg@20": r.valid["ndcg@20"], "seconds": r.seconds}
               for r in result.history]
    jsonio.write(job["row"], {
        "model_config": asdict(model_config), "train_config": asdict(train_config),
        "best_epoch": result.best_epoch, "epochs": result.epochs, "stopped_by": result.stopped_by,
        "seconds": result.seconds, "seconds_to_best": sum(h["seconds"] for h in history[:result.best_epoch]),
        "seconds_per_epoch": result.seconds / max(result.epochs, 1), "cpu_seconds": cpu_seconds,
        "cpu_seconds_per_epoch": cpu_seconds / max(result.epochs, 1), "total_seconds": time.perf_counter() - start,
        "peak_memory_mb": peak_memory_mb(), "valid": result.valid, "test": test.metrics(), "history": history,
        "library": str(Path(sys.modules["rsir"].__file__ or "").parent), "machine": machine(),
        "date": time.strftime("%Y-%m-%d")})


def run_arm(job: dict[str, Any], rev: str | None) -> dict[str, Any]:
    env = dict(os.environ)
    if rev is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree(rev)), env.get("PYTHONPATH", "")])
    subprocess.run([sys.executable, __file__, "--worker", json.dumps(job)], env=env, check=True)
    row: dict[str, Any] = jsonio.loads(Path(job["row"]).read_text())
    return row


def compare(rows: dict[str, dict[int, dict[str, Any]]], ranks: dict[tuple[str, int], Path]) -> dict[str, Any]:
    """Each arm against the first, per seed and pooled over seeds (users × seeds as pairs)."""
    arms = list(rows)
    out: dict[str, Any] = {}
    for arm in arms[1:]:
        seeds = sorted(set(rows[arm]) & set(rows[arms[0]]))
        pairs = {s: (EvalResult(np.load(ranks[(arms[0], s)])), EvalResult(np.load(ranks[(arm, s)]))) for s in seeds}
        per_seed = {s: {m: paired_test(pairs[s][0], pairs[s][1], m) for m in METRICS} for s in seeds}
        pooled = ({m: paired_test(EvalResult(np.concatenate([pairs[s][0].ranks for s in seeds])),
                                  EvalResult(np.concatenate([pairs[s][1].ranks for s in seeds])), m)
                   for m in METRICS} if seeds else {})
        ratio = [rows[arms[0]][s]["seconds"] / rows[arm][s]["seconds"] for s in seeds]
        out[arm] = {"against": arms[0], "seeds": seeds, "per_seed": per_seed, "pooled": pooled,
                    "speedup_to_stop": float(np.mean(ratio)) if ratio else None}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT.parent / "configs" / "beauty-sasrec-strong.toml")
    parser.add_argument("--arms", nargs="+", default=["before@HEAD~1:", "after:"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0: torch's default)")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return
    config = tomllib.loads(args.config.read_text())
    data = config["data"]
    out = args.out or ROOT / "results" / f"fast-training-{data}.json"
    cache = ROOT / "cache" / "fast-training"
    cache.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    ranks: dict[tuple[str, int], Path] = {}

    def record(comparisons: dict[str, Any] | None = None) -> None:
        jsonio.write(out, {"config": args.config.name, "data": data, "arms": args.arms,
                           "runs": {a: {str(s): r for s, r in v.items()} for a, v in rows.items()},
                           **({"comparisons": comparisons} if comparisons is not None else {})})

    for text in args.arms:
        arm, rev, overrides = parse_arm(text)
        rows[arm] = {}
        for seed in args.seeds:
            stem = cache / f"{data}-{arm}-seed{seed}"
            ranks[(arm, seed)], row_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
            if not (row_path.exists() and ranks[(arm, seed)].exists()):
                model = {**config.get("model", {}), **{k: v for k, v in overrides.items() if k in MODEL_FIELDS}}
                train_ = {**config.get("train", {}), **{k: v for k, v in overrides.items() if k not in MODEL_FIELDS},
                          "seed": seed}
                run_arm({"data": data, "data_dir": args.data_dir, "threads": args.threads, "model": model,
                         "train": train_, "ranks": str(ranks[(arm, seed)]), "row": str(row_path)}, rev)
            rows[arm][seed] = {**jsonio.loads(row_path.read_text()), "rev": rev}
            row = rows[arm][seed]
            print(f"{arm} seed {seed}: best epoch {row['best_epoch']} of {row['epochs']}, {row['seconds']:.0f} s "
                  f"({row['seconds_to_best']:.0f} s to the best); test R@10 {row['test']['recall@10']:.4f} "
                  f"N@10 {row['test']['ndcg@10']:.4f}", flush=True)
            record()
    comparisons = compare(rows, ranks)
    record(comparisons)
    for arm, c in comparisons.items():
        pooled = c["pooled"].get("recall@10", {})
        print(f"{arm} vs {c['against']}: {c['speedup_to_stop']:.2f}× to early stop; pooled R@10 "
              f"{pooled.get('relative', 0):+.2%} (p = {pooled.get('p_ttest', float('nan')):.3g})")


if __name__ == "__main__":
    main()
