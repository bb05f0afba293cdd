"""RSIR against the baselines (paper Table 1 and its ablations) → bench/results/rsir/*.json.

For every (dataset, backbone, seed): a base model on D0; RSIR: the base model generates D'1,
a fresh student trains on D1 = D0 ∪ D'1 (``--iterations K`` repeats, Table 6); Reordering and
Insertion add exactly as many sequences as RSIR did (``rsir+insertion``: both at once, the data
``TrainConfig.insertion_ratio`` trains on).
``--teacher`` lets another backbone's base model generate for the student (weak-to-strong).
Base checkpoints are cached under ``bench/cache`` (also written by ``accuracy.py``) so that
variants (``--tag``) reuse the same teacher; a run of the baselines alone takes RSIR's count from
a recorded RSIR row with the same teacher and generation settings, and needs no teacher.
Per-user test ranks are kept (``bench/results/rsir/ranks``) so ``summarize.py`` can run paired
tests across seeds.

Examples::

    python bench/rsir_table.py --datasets beauty --models sasrec --seeds 0 1 2
    python bench/rsir_table.py --datasets sports --iterations 5 --methods rsir          # Table 6
    python bench/rsir_table.py --datasets sports --tau inf --iterations 3 --tag no-fidelity  # Table 2
    python bench/rsir_table.py --datasets sports --tau 5 --tag tau5 --methods rsir      # Table 7
    python bench/rsir_table.py --datasets beauty --teacher gru --methods rsir          # Fig. 4 (GRU → SASRec)
    python bench/rsir_table.py --datasets toys --methods rsir --tau 50 --synthetic-weight 0.5 --finetune \
        --finetune-lr-scale 0.3 --finetuned-teacher --tag w0.5-tau50-lr0.3-tft     # rsir.loop's recipe
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
from accuracy import SETTINGS, configs
from machine import machine

from rsir.analysis import describe
from rsir.augmentation import augment, stack_insertion
from rsir.checkpoint import load_checkpoint, save_checkpoint
from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from rsir.datasets import SequenceDataset
from rsir.evaluation import evaluate
from rsir.generation import generate, merge_generated
from rsir.models import MODELS, SequentialRecommender
from rsir.sources import load_dataset
from rsir.training import STOP_METRIC, TrainResult, finetune_real, train

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "rsir"
CACHE = HERE / "cache"


def _fit(data: SequenceDataset, model: ModelConfig, config: TrainConfig) -> tuple[TrainResult, dict]:
    result = train(data, model, config, progress=False)
    return result, _row(data, result)


def _row(data: SequenceDataset, result: TrainResult) -> dict:
    test = evaluate(result.model, data, "test")
    return {"valid": result.valid, "test": test.metrics(), "best_epoch": result.best_epoch,
            "epochs": result.epochs, "train_seconds": result.seconds, "ranks": test.ranks}


def _finetune(data: SequenceDataset, model_config: ModelConfig, config: TrainConfig, first: TrainResult,
              row: dict) -> tuple[SequentialRecommender, dict]:
    """``rsir.training.finetune_real`` after the first stage ``first`` (whose row is ``row``): the
    row of whichever stage validation keeps, with the second stage's own figures under ``finetune``."""
    both = finetune_real(data, model_config, config, first, progress=False)
    stage2 = both.history[len(first.history):]
    best = max(stage2, key=lambda r: r.valid[STOP_METRIC])
    finetune = {"best_epoch": best.epoch - first.epochs, "epochs": len(stage2), "valid": best.valid,
                "lr": config.finetune_lr,
                "train_seconds": both.seconds - first.seconds, "kept": both.finetune_kept}
    if both.finetune_kept:
        tuned = _row(data, both)
        row = row | {k: tuned[k] for k in ("valid", "test", "ranks")}
    return both.model, row | {"finetune": finetune}


def _save(name: str, row: dict) -> None:
    (OUT / "ranks").mkdir(parents=True, exist_ok=True)
    np.save(OUT / "ranks" / f"{name}.npy", row.pop("ranks").astype(np.int32))
    row["machine"], row["date"] = machine(), time.strftime("%Y-%m-%d")
    (OUT / f"{name}.json").write_text(json.dumps(row, indent=2, default=float) + "\n")
    print(f"{name}: test recall@10 {row['test']['recall@10']:.4f} ndcg@10 {row['test']['ndcg@10']:.4f}", flush=True)


def _base(data: SequenceDataset, dataset_name: str, model_name: str, seed: int,
          args: argparse.Namespace) -> SequentialRecommender:
    """The base model of (dataset, backbone, seed) on D0: cached, or trained and recorded."""
    model_config, train_config = configs(args.setting, model_name, seed)
    stem = f"{dataset_name}-{model_name}-{args.setting}-seed{seed}"
    CACHE.mkdir(exist_ok=True)
    base_ckpt = CACHE / f"{stem}-base.pt"
    if base_ckpt.exists():
        model, info = load_checkpoint(base_ckpt)
        if info.model_config != model_config:
            raise SystemExit(f"{base_ckpt} was trained with another {model_name} config; delete it to retrain")
        if (OUT / f"{stem}-base.json").exists():
            return model
        # trained by accuracy.py: evaluate it here for the per-user ranks
        test = evaluate(model, data, "test")
        _save(f"{stem}-base", {"method": "base", "dataset": dataset_name, "model": model_name, "seed": seed,
                               "setting": args.setting, "data": describe(data), **info.metrics,
                               "test": test.metrics(), "ranks": test.ranks})
        return model
    result, row = _fit(data, model_config, train_config)
    model = result.model
    save_checkpoint(base_ckpt, model, train_config, data.version, {"test": row["test"]})
    _save(f"{stem}-base", {"method": "base", "dataset": dataset_name, "model": model_name, "seed": seed,
                           "setting": args.setting, "data": describe(data), **row})
    return model


def _fit_and_save(data: SequenceDataset, model_config: ModelConfig, config: TrainConfig, name: str,
                  args: argparse.Namespace, meta: dict) -> SequentialRecommender:
    """Fit on ``data`` and save the row as ``<name><tag>``; with ``--finetune`` also the fine-tuned
    row as ``<name><tag>-ft``. Returns the model the last saved row describes."""
    first, row = _fit(data, model_config, config)
    _save(f"{name}{args.tag}", {**meta, "tag": args.tag, **row})
    if not args.finetune:
        return first.model
    model, tuned = _finetune(data, model_config, config, first, row)
    _save(f"{name}{args.tag}-ft", {**meta, "tag": f"{args.tag}-ft", **tuned})
    return model


def _configs(model_name: str, seed: int, args: argparse.Namespace) -> tuple[ModelConfig, TrainConfig]:
    """The backbone's bench configs with this run's synthetic weight and real-data stage rate."""
    model_config, train_config = configs(args.setting, model_name, seed)
    return model_config, replace(train_config, synthetic_weight=args.synthetic_weight,
                                 finetune_lr_scale=args.finetune_lr_scale)


def _recorded_count(stem: str, teacher_name: str, generation: GenerationConfig, finetuned_teacher: bool) -> int | None:
    """How many sequences RSIR's first iteration added, read from a row already recorded with the same
    teacher and generation settings: a baseline-only run then needs no teacher, which a machine without
    the checkpoint cache would otherwise retrain just to count."""
    for path in sorted(OUT.glob(f"{stem}-rsir1*.json")):
        row = json.loads(path.read_text())
        if (row.get("teacher"), row.get("finetuned_teacher", False), row["generation"]) == (
                teacher_name, finetuned_teacher, asdict(generation)):
            return row["merge"]["added"]
    return None


def _iterate(data: SequenceDataset, dataset_name: str, model_name: str, seed: int, generation: GenerationConfig,
             args: argparse.Namespace) -> int:
    """The base model, its fine-tuned control, and RSIR's iterations (the methods that ask for them):
    returns how many sequences the first iteration added, the count the baselines match."""
    model_config, train_config = _configs(model_name, seed, args)
    stem = f"{dataset_name}-{model_name}-{args.setting}-seed{seed}"
    base = _base(data, dataset_name, model_name, seed, args)  # the row every method is compared against
    tuned_base = base
    if args.finetune and ("base" in args.methods or args.finetuned_teacher):
        # the same second stage on D0 alone: the control (saved with --methods base) or the teacher
        row = json.loads((OUT / f"{stem}-base.json").read_text())
        row["ranks"] = np.load(OUT / "ranks" / f"{stem}-base.npy")
        first = TrainResult(copy.deepcopy(base), row["best_epoch"], row["epochs"], row["valid"], "patience",
                            row["train_seconds"], peak_memory_mb=0.0)
        tuned_base, row = _finetune(data, model_config, train_config, first, row)
        if "base" in args.methods:
            _save(f"{stem}-base{args.tag}-ft", {**row, "tag": f"{args.tag}-ft"})
    teacher_name = args.teacher or model_name
    if args.teacher is not None:
        teacher = _base(data, dataset_name, teacher_name, seed, args)
    else:  # rsir.loop's teacher is iteration 0's reported model: the fine-tuned base under finetune_real
        teacher = tuned_base if args.finetuned_teacher else base
    current, added = data, 0
    for k in range(1, args.iterations + 1):
        start = time.perf_counter()
        batches = list(generate(teacher, current, generation))
        current, counts = merge_generated(current, batches, name=f"{dataset_name}+rsir{k}")
        gen_seconds = time.perf_counter() - start
        if k == 1:
            added = counts["added"]
            if "rsir+insertion" in args.methods:  # are the two kinds of synthetic data complementary?
                stacked = stack_insertion(current, 1.0, seed, model_config.max_len)  # = insertion_ratio 1
                _fit_and_save(stacked, model_config, train_config, f"{stem}-rsir+insertion", args, {
                    "method": "rsir+insertion", "iteration": 1, "dataset": dataset_name, "model": model_name,
                    "teacher": teacher_name, "seed": seed, "setting": args.setting, "generation": asdict(generation),
                    "merge": counts, "added": stacked.num_synthetic, "synthetic_weight": args.synthetic_weight,
                    "data": describe(stacked)})
        if "rsir" not in args.methods:
            break  # the baselines need only the first iteration's count
        student = _fit_and_save(current, model_config, train_config, f"{stem}-rsir{k}", args, {
            "method": "rsir", "iteration": k, "dataset": dataset_name, "model": model_name,
            "teacher": teacher_name, "finetuned_teacher": args.finetuned_teacher, "seed": seed,
            "setting": args.setting, "generation": asdict(generation), "gen_stats": batches[-1].stats.to_dict(),
            "merge": counts, "generation_seconds": gen_seconds, "synthetic_weight": args.synthetic_weight,
            "data": describe(current)})
        # self-improvement: the student teaches next; a named teacher backbone retrains on D_k
        teacher = student if args.teacher is None else train(
            current, configs(args.setting, teacher_name, seed)[0], train_config, progress=False).model
    return added


def run(dataset_name: str, model_name: str, seed: int, args: argparse.Namespace) -> None:
    data = load_dataset(dataset_name, args.data_dir)
    stem = f"{dataset_name}-{model_name}-{args.setting}-seed{seed}"
    generation = GenerationConfig(tau=args.tau, p=args.p, m=args.m, top_k=args.top_k, temperature=args.temperature,
                                  prefix=args.prefix, seed=seed)
    baselines = [method for method in ("reorder", "insertion") if method in args.methods]
    added = None
    if baselines and set(args.methods) == set(baselines):
        added = _recorded_count(stem, args.teacher or model_name, generation, args.finetuned_teacher)
    if added is None:
        added = _iterate(data, dataset_name, model_name, seed, generation, args)
    model_config, train_config = _configs(model_name, seed, args)
    for method in baselines:
        count = round(args.baseline_scale * added)
        augmented = augment(data, method, count, seed=seed, max_len=model_config.max_len)
        _fit_and_save(augmented, model_config, train_config, f"{stem}-{method}", args, {
            "method": method, "dataset": dataset_name, "model": model_name, "seed": seed,
            "setting": args.setting, "added": count, "synthetic_weight": args.synthetic_weight,
            "data": describe(augmented)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["beauty", "sports", "toys"])
    parser.add_argument("--models", nargs="+", default=["sasrec"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["rsir", "reorder", "insertion"],
                        choices=["rsir", "reorder", "insertion", "rsir+insertion", "base"],
                        help="rsir+insertion: D0 plus RSIR's sequences plus as many Insertion ones; "
                             "base: with --finetune, fine-tune the base model on D0 too (the control)")
    parser.add_argument("--setting", default="strong", choices=list(SETTINGS))
    parser.add_argument("--teacher", choices=sorted(MODELS),
                        help="backbone of the generator (default: the student's own; Fig. 4 weak-to-strong)")
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--tau", type=float, default=20)
    parser.add_argument("--p", type=float, default=0.5)
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--top-k", type=int, default=1)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--prefix", default="first", choices=["first", "random"])
    parser.add_argument("--synthetic-weight", type=float, default=1.0)
    parser.add_argument("--baseline-scale", type=float, default=1.0,
                        help="Reordering and Insertion add this many times as many sequences as RSIR "
                             "(2 with --tag x2: the control for rsir+insertion)")
    parser.add_argument("--finetune", action="store_true",
                        help="also fine-tune each augmented model on the real sequences alone (rows tagged -ft)")
    parser.add_argument("--finetune-lr-scale", type=float, default=1.0,
                        help="TrainConfig.finetune_lr_scale: the real-data stage's learning rate relative to "
                             "the first stage's (<1: gentler)")
    parser.add_argument("--finetuned-teacher", action="store_true",
                        help="with --finetune: iteration 1's teacher is the fine-tuned base, as in rsir.loop "
                             "(default: the plain base, which every committed row used)")
    parser.add_argument("--tag", default="", help="suffix for result names of a variant (e.g. tau5)")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    if args.finetuned_teacher and not args.finetune:
        parser.error("--finetuned-teacher needs --finetune")
    if args.tag and not args.tag.startswith("-"):
        args.tag = f"-{args.tag}"  # result names read <stem>-rsir1-<tag>
    if not math.isfinite(args.tau) and not args.tag:
        args.tag = "-no-fidelity"
    if args.teacher and not args.tag:
        args.tag = f"-teacher-{args.teacher}"
    for dataset in args.datasets:
        for model in args.models:
            for seed in args.seeds:
                run(dataset, model, seed, args)


if __name__ == "__main__":
    main()
