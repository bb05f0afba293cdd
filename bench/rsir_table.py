"""RSIR against the baselines (paper Table 1 and its ablations) → bench/results/rsir/*.json.

A thin driver of the product's own loop: every (dataset, seed) runs a recipe (``rsir.recipes``,
the same resolution as ``rsir run`` and ``POST /runs``) through ``rsir.loop.run_local``, and the
JSON rows are read off the run's state: the base model (iteration 0) and one row per RSIR
iteration. Reordering and Insertion then add exactly as many sequences as RSIR's first iteration
did and train with the same settings (``--baselines``). Per-user test ranks are kept
(``bench/results/rsir/ranks``, not in git) so ``summarize.py`` can run paired tests across seeds.

Examples::

    python bench/rsir_table.py --datasets beauty --seeds 0 1 2                 # the beauty recipe
    python bench/rsir_table.py --datasets sports --recipe paper --iterations 3 --tau inf --tag no-fidelity
    python bench/rsir_table.py --datasets toys --recipe toys --baselines insertion reorder
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from rsir import jsonio
from rsir.analysis import describe
from rsir.augmentation import augment
from rsir.loop import LocalRun, run_local
from rsir.recipes import resolve
from rsir.recursion import Trained
from rsir.resources import machine
from rsir.sources import load_dataset

OUT = Path(__file__).resolve().parent / "results" / "rsir"


def _save(out: Path, name: str, row: dict[str, Any], ranks: np.ndarray) -> None:
    (out / "ranks").mkdir(parents=True, exist_ok=True)
    np.save(out / "ranks" / f"{name}.npy", ranks.astype(np.int32))
    row.update(machine=machine(), date=time.strftime("%Y-%m-%d"))
    jsonio.write(out / f"{name}.json", row)
    print(f"{name}: test recall@10 {row['test']['recall@10']:.4f} ndcg@10 {row['test']['ndcg@10']:.4f}", flush=True)


def _trained(record: Trained) -> dict[str, Any]:
    return {"valid": record.valid, "test": record.test, "best_epoch": record.best_epoch, "epochs": record.epochs,
            "train_seconds": record.seconds, "finetune_kept": record.finetune_kept,
            "insertion_sequences": record.insertion_sequences}


def _overrides(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """The command line's settings over the recipe's, shaped like a recipe file."""
    given: dict[str, Any] = {"seed": seed}
    if args.iterations is not None:
        given["iterations"] = args.iterations
    generation = {k: getattr(args, k) for k in ("tau", "p", "m", "top_k", "prefix") if getattr(args, k) is not None}
    train = {k: getattr(args, k) for k in ("synthetic_weight", "finetune_lr_scale", "insertion_ratio")
             if getattr(args, k) is not None}
    if args.finetune is not None:
        train["finetune_real"] = args.finetune
    if args.teacher_real_stage:
        given["teacher"] = {"real_stage": True}
    return {**given, **({"generation": generation} if generation else {}), **({"train": train} if train else {})}


def run(dataset_name: str, seed: int, args: argparse.Namespace) -> LocalRun:
    data = load_dataset(dataset_name, args.data_dir)
    recipe, config = resolve(args.recipe, dataset_name, _overrides(args, seed))
    model = config.student.name
    stem = f"{dataset_name}-{model}-{args.setting or ('paper' if recipe == 'paper' else 'strong')}-seed{seed}"
    tag = args.tag if args.tag is not None else f"-recipe-{recipe}"
    done = run_local(data, config, progress=False)
    state = done.state
    meta = {"dataset": dataset_name, "model": model, "seed": seed, "recipe": recipe, "config": config.to_dict()}
    iterations = state.iterations
    base = iterations[0].student
    assert base is not None
    _save(args.out, f"{stem}-base{tag}", {"method": "base", **meta, "data": iterations[0].dataset_stats,
                                          **_trained(base)}, done.workers.ranks(base.ranks))
    for prev, it in itertools.pairwise(iterations):
        assert it.student is not None and prev.generation is not None
        _save(args.out, f"{stem}-rsir{it.iteration}{tag}", {
            "method": "rsir", "iteration": it.iteration, **meta, "dataset_version": it.dataset,
            "teacher": "student" if config.teacher is None else asdict(config.teacher),
            "generation": asdict(config.generation), "gen_stats": prev.generation["stats"], "merge": prev.merge,
            "generation_seconds": prev.timings.get("generate"), "selected": state.selected == it.iteration,
            "data": it.dataset_stats, **_trained(it.student)}, done.workers.ranks(it.student.ranks))
    added = iterations[0].merge["added"] if iterations[0].merge else 0
    train = replace(config.train, insertion_ratio=0.0)  # the baselines' own sequences are their augmentation
    for method in args.baselines:
        augmented = augment(data, method, added, seed=seed, max_len=config.student.max_len)
        done.workers.datasets[augmented.version] = augmented
        record = done.workers.train(method, 0, augmented.version, config.student, train)
        _save(args.out, f"{stem}-{method}{tag}", {"method": method, **meta, "added": added, "data": describe(augmented),
                                        **_trained(record)}, done.workers.ranks(record.ranks))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["beauty", "sports", "toys"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--recipe", help="default: each dataset's own recipe (rsir.recipes.recipe_for)")
    parser.add_argument("--baselines", nargs="*", default=[], choices=["reorder", "insertion"])
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--tau", type=jsonio.number)
    parser.add_argument("--p", type=float)
    parser.add_argument("--m", type=int)
    parser.add_argument("--top-k", type=int)
    parser.add_argument("--prefix", choices=["first", "random"])
    parser.add_argument("--synthetic-weight", type=float)
    parser.add_argument("--finetune", action=argparse.BooleanOptionalAction, help="TrainConfig.finetune_real")
    parser.add_argument("--finetune-lr-scale", type=float)
    parser.add_argument("--insertion-ratio", type=float)
    parser.add_argument("--teacher-real-stage", action="store_true",
                        help="the student teaches after a real-data stage (the fine-tuned base on D0)")
    parser.add_argument("--setting", help="the rows' setting label (default: 'paper' for the paper recipe, "
                                          "else 'strong')")
    parser.add_argument("--tag", help="suffix of the rows' names (default: -recipe-<name>)")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", type=Path, default=OUT, help="where the rows go (default: bench/results/rsir)")
    args = parser.parse_args()
    if args.tag and not args.tag.startswith("-"):
        args.tag = f"-{args.tag}"
    for dataset in args.datasets:
        for seed in args.seeds:
            run(dataset, seed, args)


if __name__ == "__main__":
    main()
