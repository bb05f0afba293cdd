"""RSIR against the baselines (paper Table 1 and its ablations) → bench/results/rsir/*.json.

A thin driver of the product's own loop: every (dataset, seed) runs a recipe (``rsir.recipes``,
the same resolution as ``rsir run`` and ``POST /runs``) through ``rsir.loop.run_local``, and the
JSON rows are read off the run's state: the base model (iteration 0) and one row per RSIR
iteration. Reordering and Insertion then add exactly as many sequences as RSIR's first iteration
did, or a multiple (``--baseline-scale 2``), and train with the same settings (``--baselines``).
Per-user test ranks are kept (``bench/results/rsir/ranks``, not in git) so ``summarize.py`` can run
paired tests across seeds.

Examples::

    python bench/rsir_table.py --datasets beauty --seeds 0 1 2                 # the beauty recipe
    python bench/rsir_table.py --datasets sports --recipe paper --iterations 3 --tau inf --tag no-fidelity
    python bench/rsir_table.py --datasets toys --baselines insertion reorder --no-finetune-real
    python bench/rsir_table.py --datasets toys --recipe paper --model gru --iterations 0 --tag "" --save-base models
    python bench/rsir_table.py --datasets toys --recipe paper --teacher-checkpoint models/toys-gru-paper-seed0.pt \\
        --seeds 0 --tag teacher-gru

Every flag of ``rsir run`` that overrides a recipe is taken here too (``rsir.flags.add_run_flags``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import records

from rsir import jsonio
from rsir.analysis import describe
from rsir.augmentation import augment
from rsir.checkpoint import save_checkpoint
from rsir.flags import add_run_flags, given_flags, run_config_from_args
from rsir.loop import LocalRun, run_local
from rsir.recursion import RunState, Trained
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




def run(dataset_name: str, seed: int, args: argparse.Namespace, given: argparse.Namespace) -> LocalRun:
    data = load_dataset(dataset_name, args.data_dir)
    recipe, config = run_config_from_args(args, given, dataset_name, seed=seed)
    model = config.student.name
    setting = args.setting or ("paper" if recipe == "paper" else "strong")
    stem = f"{dataset_name}-{model}-{setting}-seed{seed}"
    tag = args.tag if args.tag is not None else f"-recipe-{recipe}"
    start = time.perf_counter()

    def report(state: RunState) -> None:  # one line per committed stage: where a long run stands
        print(f"{stem}{tag}: iteration {state.iteration}, next {state.stage.value} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)

    done = run_local(data, config, progress=False, on_stage=report)
    state = done.state
    recorded = config.to_dict()
    teacher: dict[str, Any] | None = recorded["teacher"]
    if teacher is not None and teacher["checkpoint"] is not None:  # a file here, not the reader's path
        teacher["checkpoint"] = Path(teacher["checkpoint"]).name
    meta = {"dataset": dataset_name, "model": model, "setting": setting, "seed": seed, "tag": tag, "recipe": recipe,
            "config": recorded}
    iterations = state.iterations
    base = iterations[0].student
    assert base is not None
    if args.save_base:  # a teacher for other runs' --teacher-checkpoint (the teacher × student matrix)
        args.save_base.mkdir(parents=True, exist_ok=True)
        save_checkpoint(args.save_base / f"{stem}.pt", done.workers.models[base.checkpoint], config.train,
                        dataset_version=iterations[0].dataset, metrics=base.valid)
    generator = config.generator or done.workers.models["fixed"].config  # a fixed checkpoint names its own
    if config.generator is None and teacher is not None:
        teacher = {**teacher, "model": asdict(generator)}
    _save(args.out, f"{stem}-base{tag}", {"method": "base", **meta, "data": iterations[0].dataset_stats,
                                          **_trained(base)}, done.workers.ranks(base.ranks))
    for prev, it in itertools.pairwise(iterations):
        assert it.student is not None and prev.generation is not None
        _save(args.out, f"{stem}-rsir{it.iteration}{tag}", {
            "method": "rsir", "iteration": it.iteration, **meta, "dataset_version": it.dataset,
            "teacher": generator.name,
            "teacher_config": teacher,
            "generation": asdict(config.generation), "gen_stats": prev.generation["stats"], "merge": prev.merge,
            "generation_seconds": prev.timings.get("generate"), "selected": state.selected == it.iteration,
            "data": it.dataset_stats, **_trained(it.student)}, done.workers.ranks(it.student.ranks))
    added = round(args.baseline_scale * (iterations[0].merge["added"] if iterations[0].merge else 0))
    train = replace(config.train, insertion_ratio=0.0)  # the baselines' own sequences are their augmentation
    if args.baseline_scale != 1:
        meta["tag"] = tag = records.scaled_tag(tag, args.baseline_scale)
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
    parser.add_argument("--baselines", nargs="*", default=[], choices=["reorder", "insertion"])
    parser.add_argument("--baseline-scale", type=float, default=1.0,
                        help="the baselines add this many times what RSIR's first iteration added (rows -x<scale>)")
    add_run_flags(parser)  # the recipe and anything over it, as `rsir run` takes them
    parser.add_argument("--setting", help="the rows' setting label (default: 'paper' for the paper recipe, "
                                          "else 'strong')")
    parser.add_argument("--tag", help="suffix of the rows' names (default: -recipe-<name>)")
    parser.add_argument("--data-dir")
    parser.add_argument("--save-base", type=Path, help="also save each base model here as <row stem>.pt")
    parser.add_argument("--out", type=Path, default=OUT, help="where the rows go (default: bench/results/rsir)")
    args = parser.parse_args()
    if args.tag and not args.tag.startswith("-"):
        args.tag = f"-{args.tag}"
    given = given_flags(sys.argv[1:])
    for dataset in args.datasets:
        for seed in args.seeds:
            run(dataset, seed, args, given)


if __name__ == "__main__":
    main()
