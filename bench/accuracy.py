"""Accuracy of every backbone on the benchmark sets → bench/results/accuracy-*.json.

Two settings:
* ``strong`` — full softmax cross-entropy over every item (our recommended setting);
* ``paper``  — the RSIR paper's setting: sampled softmax with 256 negatives, dim 64.

Usage: ``python bench/accuracy.py --datasets beauty sports toys --models sasrec cl4srec hstu``
(needs ``RSIR_DATA_DIR`` or ``--data-dir``). Each run early-stops on validation NDCG@20; the
test metrics are those of the epoch chosen on validation.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, fields, replace
from pathlib import Path

from rsir import jsonio
from rsir.checkpoint import save_checkpoint
from rsir.config import ModelConfig, TrainConfig, from_dict
from rsir.datasets import SequenceDataset
from rsir.evaluation import evaluate
from rsir.models import SequentialRecommender
from rsir.resources import machine, resolve_device
from rsir.sources import load_dataset
from rsir.training import EpochReport, train

RESULTS = Path(__file__).resolve().parent / "results"
CACHE = Path(__file__).resolve().parent / "cache"  # trained models, reused as teachers by rsir_table.py
SETTINGS: dict[str, tuple[ModelConfig, TrainConfig]] = {
    "strong": (ModelConfig(dim=64, layers=2, heads=2, dropout=0.5), TrainConfig(loss="ce", batch_size=64, patience=8)),
    "paper": (ModelConfig(dim=64, layers=2, heads=2, dropout=0.2),
              TrainConfig(loss="sampled", negatives=256, batch_size=256, patience=20)),
}
# Per-backbone choices made on validation: by bench/tune.py (toys, seed 0; the sweep is in docs/results.md), or
# for BSARec by its authors (their beauty configuration; 37 sequences a step give their steps per epoch and
# non-empty prefixes per step on beauty, see docs/backbones.md).
CHOSEN: dict[tuple[str, str], dict[str, object]] = {
    ("paper", "cl4srec"): {"cl_weight": 0.01},
    ("strong", "bsarec"): {"heads": 1, "bsarec_alpha": 0.7, "bsarec_c": 5, "lr": 5e-4, "batch_size": 37,
                           "patience": 10},
}
MODEL_FIELDS = {f.name for f in fields(ModelConfig)}


def configs(setting: str, model_name: str, seed: int,
            overrides: dict[str, object] | None = None) -> tuple[ModelConfig, TrainConfig]:
    """The setting's configs for one backbone and seed, with ``overrides`` of any ModelConfig or
    TrainConfig field; by default that backbone's validated choices (``CHOSEN``)."""
    if overrides is None:
        overrides = CHOSEN.get((setting, model_name), {})
    model_config, train_config = SETTINGS[setting]
    model = {k: v for k, v in overrides.items() if k in MODEL_FIELDS}
    train = {k: v for k, v in overrides.items() if k not in MODEL_FIELDS}
    return (from_dict(ModelConfig, {**asdict(model_config), "name": model_name, **model}),
            from_dict(TrainConfig, {**asdict(train_config), "seed": seed, **train}))


def _print_epoch(report: EpochReport) -> None:
    print(f"  epoch {report.epoch}: loss {report.loss:.4f}, valid ndcg@20 {report.valid['ndcg@20']:.4f} "
          f"recall@10 {report.valid['recall@10']:.4f} ({report.seconds:.0f} s)", flush=True)


def fit(dataset: SequenceDataset, model_config: ModelConfig, train_config: TrainConfig) -> tuple[
        SequentialRecommender, dict]:
    """Train with early stopping on validation, then test the chosen epoch: the model and its record
    (configs, metrics, the validation curve, timings, peak memory, machine)."""
    start = time.perf_counter()
    result = train(dataset, model_config, train_config, on_epoch=_print_epoch, progress=False)
    eval_start = time.perf_counter()
    test = evaluate(result.model, dataset, "test", device=resolve_device(train_config.device)).metrics()
    return result.model, {
        "model_config": asdict(model_config), "train_config": asdict(train_config),
        "valid": result.valid, "test": test, "best_epoch": result.best_epoch, "epochs": result.epochs,
        "stopped_by": result.stopped_by, "history": [asdict(r) for r in result.history],
        "train_seconds": result.seconds,
        "seconds_per_epoch": result.seconds_per_epoch, "test_eval_seconds": time.perf_counter() - eval_start,
        "total_seconds": time.perf_counter() - start, "peak_memory_mb": result.peak_memory_mb,
        "machine": machine(), "date": time.strftime("%Y-%m-%d"),
    }


def run_one(dataset_name: str, model_name: str, setting: str, seed: int, data_dir: str | None,
            time_budget: float | None = None) -> dict:
    dataset = load_dataset(dataset_name, data_dir)
    model_config, train_config = configs(setting, model_name, seed)
    train_config = replace(train_config, time_budget=time_budget)
    model, row = fit(dataset, model_config, train_config)
    summary = {k: row[k] for k in ("valid", "test", "best_epoch", "epochs", "train_seconds")}
    save_checkpoint(CACHE / f"{dataset_name}-{model_name}-{setting}-seed{seed}-base.pt", model, train_config,
                    dataset.version, summary)
    return {"dataset": dataset_name, "model": model_name, "setting": setting, "seed": seed, **row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["beauty", "sports", "toys"])
    parser.add_argument("--models", nargs="+", default=["sasrec", "cl4srec", "hstu"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--time-budget", type=float, help="seconds of training per run; the record says "
                                                           "stopped_by time_budget if it ran out")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    for dataset in args.datasets:
        for model in args.models:
            for setting in args.settings:
                for seed in args.seeds:
                    row = run_one(dataset, model, setting, seed, args.data_dir, args.time_budget)
                    path = RESULTS / f"accuracy-{dataset}-{model}-{setting}-seed{seed}.json"
                    jsonio.write(path, row)
                    print(f"{dataset:7} {model:8} {setting:6} seed {seed}: test recall@10 "
                          f"{row['test']['recall@10']:.4f} ndcg@10 {row['test']['ndcg@10']:.4f} "
                          f"({row['epochs']} epochs, {row['seconds_per_epoch']:.1f} s/epoch, "
                          f"{row['train_seconds'] / 60:.1f} min)", flush=True)


if __name__ == "__main__":
    main()
