"""The ``rsir`` command: data, training, evaluation, generation, the RSIR loop and the local stack.

Every option of ``ModelConfig``, ``TrainConfig`` and ``GenerationConfig`` is a flag generated from
the dataclass (``rsir.flags``), so the CLI and the configs cannot drift apart. Input errors print
one line and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from rsir.errors import RsirError
from rsir.flags import (
    add_config_flags,
    add_run_flags,
    config_from_args,
    given_flags,
    load_config_file,
    run_config_from_args,
)
from rsir.jsonio import write as write_json

if TYPE_CHECKING:
    from rsir.distributed import World


def _table(rows: dict[str, dict[str, float]]) -> str:
    metrics = list(next(iter(rows.values())))
    lines = ["split  " + "  ".join(f"{m:>9}" for m in metrics)]
    lines += [f"{split:<6} " + "  ".join(f"{vals[m]:>9.4f}" for m in metrics) for split, vals in rows.items()]
    return "\n".join(lines)




def cmd_train(args: argparse.Namespace) -> int:
    from rsir import distributed

    device = config_from_args(args, TrainConfig).device
    if args.nproc > 1 and not distributed.launched():
        distributed.check_devices(device, args.nproc)
        return _launch(args.nproc, args.argv)
    world = distributed.init_from_env(device)
    try:
        return _train(args, world)
    finally:
        distributed.shutdown()


def _launch(nproc: int, argv: list[str]) -> int:
    """``rsir train --nproc N``: the same command as N processes on this machine, through torchrun's
    launcher (a free rendezvous port on loopback); each finds its rank in the environment."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    own = [i for i, a in enumerate(argv) if a == "--nproc" or a.startswith("--nproc=")]
    drop = {i + k for i in own for k in range(1 if "=" in argv[i] else 2)}  # torchrun would read it as its own
    script = [a for i, a in enumerate(argv) if i not in drop]
    try:
        run(get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "rsir.cli", *script]))
    except ChildFailedError as exc:
        sys.stderr.write(f"rsir: error: a training process failed: {exc}\n")
        return 1
    return 0


def _train(args: argparse.Namespace, world: World | None) -> int:
    from rsir.checkpoint import save_checkpoint
    from rsir.evaluation import evaluate
    from rsir.resources import resolve_device
    from rsir.sources import load_dataset
    from rsir.training import train

    model_config, train_config = config_from_args(args, ModelConfig), config_from_args(args, TrainConfig)
    dataset = load_dataset(args.data, args.data_dir, k_core=args.k_core)
    result = train(dataset, model_config, train_config, progress=not args.quiet)
    device = resolve_device(train_config.device) if world is None else world.device
    test = evaluate(result.model, dataset, "test", device=device, world=world).metrics()
    if world is not None and not world.is_main:
        return 0
    stem = args.out / f"{dataset.name or 'data'}-{model_config.name}-seed{train_config.seed}"
    save_checkpoint(stem.with_suffix(".pt"), result.model, train_config, dataset.version,
                    {"valid": result.valid, "test": test})
    write_json(stem.with_suffix(".json"), {
        "dataset": dataset.name, "dataset_version": dataset.version, "model_config": dataclasses.asdict(model_config),
        "train_config": dataclasses.asdict(train_config), "best_epoch": result.best_epoch, "epochs": result.epochs,
        "stopped_by": result.stopped_by, "seconds": result.seconds, "seconds_to_best": result.seconds_to_best,
        "seconds_per_epoch": result.seconds_per_epoch,
        "peak_memory_mb": result.peak_memory_mb, "finetune_kept": result.finetune_kept,
        "insertion_sequences": result.insertion_sequences, "world_size": 1 if world is None else world.size,
        "valid": result.valid,
        "test": test, "checkpoint": str(stem.with_suffix(".pt")),
    })
    sys.stdout.write(f"{dataset!r}\n{model_config.name}: best epoch {result.best_epoch} of {result.epochs} "
                     f"({result.stopped_by}), {result.seconds:.0f} s, the best after {result.seconds_to_best:.0f} s"
                     f"{_stage_note(result.finetune_kept)}\n")
    sys.stdout.write(_table({"valid": result.valid, "test": test}) + f"\nwrote {stem}.json and {stem}.pt\n")
    return 0


def _stage_note(kept: bool | None) -> str:
    return "" if kept is None else f"; real-data stage {'kept' if kept else 'not kept'} on validation"


def cmd_run(args: argparse.Namespace) -> int:
    from rsir.checkpoint import save_checkpoint
    from rsir.loop import run_local
    from rsir.plots import plot_iterations
    from rsir.sources import load_dataset

    dataset = load_dataset(args.data, args.data_dir, k_core=args.k_core)
    recipe, config = run_config_from_args(args, args.given, args.data)
    sys.stdout.write(f"{dataset!r}\nrecipe {recipe}: {config.iterations} iteration(s), student {config.student.name}"
                     f", teacher {_teacher_name(config)}\n")
    done = run_local(dataset, config, progress=not args.quiet)
    state = done.state
    payload = {"dataset": dataset.name, "dataset_version": dataset.version, "recipe": recipe,
               "config": config.to_dict(), **state.to_dict(), "datasets": state.datasets}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "report.json", payload)
    rows: list[dict[str, Any]] = [{"iteration": it.iteration, "valid": it.student.valid, "test": it.student.test,
                                   "dataset": it.dataset_stats} for it in state.iterations if it.student is not None]
    plot_iterations({"iterations": rows, "selected": state.selected}, args.out / "iterations.png",
                    title=f"RSIR on {dataset.name}: {config.student.name} ({recipe})")
    done.final_dataset.save(args.out / "final-dataset.npz")
    chosen = state.iterations[state.selected or 0].student
    assert chosen is not None
    save_checkpoint(args.out / "selected.pt", done.selected_model, config.train, None,
                    {"valid": chosen.valid, "test": chosen.test, "iteration": state.selected})
    table = {f"{r['iteration']}{'*' if r['iteration'] == state.selected else ' '}": r["test"] for r in rows}
    sys.stdout.write("test metrics per iteration (* = chosen on validation)\n" + _table(table) + "\n")
    if state.significance is not None:
        sig = state.significance["tests"]["recall@10"]
        sys.stdout.write(f"recall@10 change vs iteration 0: {sig['relative']:+.2%} "
                         f"(paired t-test p={sig['p_ttest']:.3g})\n")
    else:
        sys.stdout.write(f"no significance test: iteration {state.selected} was selected\n")
    sys.stdout.write(f"wrote {args.out}/report.json, iterations.png, final-dataset.npz, selected.pt\n")
    return 0


def _teacher_name(config: Any) -> str:
    teacher = config.teacher
    if teacher is None:
        return "the student"
    if teacher.checkpoint is not None:
        return teacher.checkpoint
    if teacher.model is not None:
        return f"{teacher.model.name} (dim {teacher.model.dim}, {teacher.model.layers} layers)"
    return "the student after a real-data stage"


def cmd_recipes(args: argparse.Namespace) -> int:
    from rsir.recipes import load_recipe, recipe_names, recipe_summary

    for name in recipe_names():
        sys.stdout.write(f"## {name}\n{load_recipe(name)}\n" if args.verbose_recipe
                         else f"{name:10} {recipe_summary(name)}\n")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from rsir.checkpoint import load_checkpoint
    from rsir.generation import generate, merge_generated
    from rsir.sources import load_dataset

    model, info = load_checkpoint(args.checkpoint)
    dataset = load_dataset(args.data, args.data_dir, k_core=args.k_core)
    if dataset.num_items != info.num_items:
        raise RsirError(f"the checkpoint knows {info.num_items} items but {args.data} has {dataset.num_items}")
    config = config_from_args(args, GenerationConfig)
    batches = list(generate(model, dataset, config))
    merged, counts = merge_generated(dataset, batches, dedup=config.dedup)
    _save_dataset(merged, args.out)
    stats = batches[-1].stats.to_dict() if batches else {}
    sys.stdout.write(json.dumps({**stats, **counts, "version": merged.version}, indent=2) + "\n")
    return 0


def cmd_augment(args: argparse.Namespace) -> int:
    from rsir.augmentation import augment
    from rsir.sources import load_dataset

    dataset = load_dataset(args.data, args.data_dir, k_core=args.k_core)
    merged = augment(dataset, args.method, args.count, seed=args.seed)
    _save_dataset(merged, args.out)
    sys.stdout.write(f"added {merged.num_synthetic - dataset.num_synthetic} sequences to {args.out} "
                     f"(version {merged.version[:12]})\n")
    return 0


def _save_dataset(dataset, target: Path) -> None:
    from rsir.data import write_sequences
    from rsir.logs import LOG_SUFFIXES, write_interactions

    suffix = target.suffix.lower()
    if suffix == ".npz":
        dataset.save(target)
    elif suffix in LOG_SUFFIXES:
        write_interactions(target, dataset.users, dataset.sequences.to_list())
    else:
        write_sequences(target, dataset.users, dataset.sequences.to_list())


def cmd_evaluate(args: argparse.Namespace) -> int:
    from rsir.checkpoint import load_checkpoint
    from rsir.evaluation import evaluate
    from rsir.sources import load_dataset

    model, info = load_checkpoint(args.checkpoint)
    dataset = load_dataset(args.data, args.data_dir, k_core=args.k_core)
    if dataset.num_items != info.num_items:
        raise RsirError(f"the checkpoint knows {info.num_items} items but {args.data} has {dataset.num_items}")
    rows = {split: evaluate(model, dataset, split, mask_history=args.mask_history).metrics()
            for split in ("valid", "test")}
    sys.stdout.write(_table(rows) + "\n")
    if args.json:
        write_json(args.json, {"checkpoint": str(args.checkpoint), "dataset_version": dataset.version, **rows})
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from rsir.sources import BENCHMARKS, data_dir, download

    root = data_dir(args.data_dir)
    if root is None:
        raise RsirError("say where to put the files: --data-dir DIR or RSIR_DATA_DIR")
    for name in (list(BENCHMARKS) if args.name == "all" else [args.name]):
        path = download(name, root)
        sys.stdout.write(f"{name}: {path} (sha256 verified)\n")
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    from rsir.analysis import describe
    from rsir.sources import load_dataset

    dataset = load_dataset(args.data, args.data_dir, k_core=args.k_core)
    stats = describe(dataset, max_len=args.max_len)
    sys.stdout.write(json.dumps(stats, indent=2) + "\n")
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    from rsir.sources import load_dataset

    dataset = load_dataset(args.source, args.data_dir, k_core=args.k_core)
    _save_dataset(dataset, args.target)
    sys.stdout.write(f"wrote {len(dataset)} sequences to {args.target} (version {dataset.version[:12]})\n")
    return 0


_SUBPARSERS: dict[str, argparse.ArgumentParser] = {}


def build_parser(extra: Callable[[Any], None] | None = None) -> argparse.ArgumentParser:
    """The ``rsir`` parser; ``extra(subparsers)`` adds commands from outside the core (``rsir up``)."""
    parser = argparse.ArgumentParser(prog="rsir", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True)

    def data_args(p: argparse.ArgumentParser, positional: str | None = None) -> None:
        if positional is None:
            p.add_argument("--data", help="benchmark name, 'synthetic', or a data file (required)")
        p.add_argument("--data-dir", type=Path, help="benchmark directory (default: $RSIR_DATA_DIR)")
        p.add_argument("--k-core", type=int, default=5, help="k-core filter for interaction logs")

    p = sub.add_parser("train", help="fit a backbone, print and save its metrics and checkpoint")
    _SUBPARSERS["train"] = p
    p.add_argument("--config", type=Path, help="a frozen experiment config (configs/*.toml)")
    data_args(p)
    add_config_flags(p, ModelConfig)
    add_config_flags(p, TrainConfig)
    p.add_argument("--out", type=Path, default=Path("runs"), help="where the JSON and checkpoint go")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--nproc", type=int, default=1,
                   help="data-parallel processes on this machine, one per GPU on CUDA (launched with torchrun; "
                        "for several machines run torchrun yourself, docs/distributed.md)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("run", help="the RSIR loop: base model, then K generate-and-retrain iterations",
                       description="Runs a recipe (configs/recipes, `rsir recipes` lists them); every flag given "
                                   "overrides the recipe's setting.")
    data_args(p)
    add_run_flags(p)
    p.add_argument("--out", type=Path, default=Path("runs/rsir"), help="report, plot, dataset and model go here")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("recipes", help="list the named recipes `rsir run --recipe` and the run API take")
    p.add_argument("--show", dest="verbose_recipe", action="store_true", help="print every setting")
    p.set_defaults(func=cmd_recipes)

    p = sub.add_parser("generate", help="fidelity-filtered generation with a checkpoint")
    p.add_argument("checkpoint", type=Path)
    data_args(p)
    add_config_flags(p, GenerationConfig)
    p.add_argument("--out", type=Path, required=True, help="the augmented dataset (.npz, .txt or a log format)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("augment", help="a heuristic augmentation baseline")
    data_args(p)
    p.add_argument("--method", choices=("reorder", "insertion"), required=True)
    p.add_argument("--count", type=int, required=True, help="sequences to add")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_augment)

    p = sub.add_parser("evaluate", help="full-ranking metrics of a checkpoint")
    p.add_argument("checkpoint", type=Path)
    data_args(p)
    p.add_argument("--mask-history", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--json", type=Path, help="also write the metrics here")
    p.set_defaults(func=cmd_evaluate)

    data = sub.add_parser("data", help="fetch, inspect and convert datasets").add_subparsers(dest="data_command",
                                                                                            required=True)
    p = data.add_parser("download", help="fetch a benchmark and verify its sha256")
    p.add_argument("name", help="beauty, sports, toys, yelp or all")
    p.add_argument("--data-dir", type=Path)
    p.set_defaults(func=cmd_data_download)
    p = data.add_parser("stats", help="size, density and entropy of a dataset")
    data_args(p)
    p.add_argument("--max-len", type=int, default=50)
    p.set_defaults(func=cmd_data_stats)
    p = data.add_parser("convert", help="write a dataset in another format (by the target's suffix)")
    p.add_argument("source", help="benchmark name, 'synthetic', or a data file")
    p.add_argument("target", type=Path, help=".txt, .csv, .tsv, .parquet, .inter or .npz")
    data_args(p, positional="source")
    p.set_defaults(func=cmd_data_convert)
    if extra is not None:
        extra(sub)
    return parser


def main(argv: Sequence[str] | None = None, extra: Callable[[Any], None] | None = None) -> int:
    parser = build_parser(extra)
    argv = list(sys.argv[1:] if argv is None else argv)
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=Path)
    known, _ = pre.parse_known_args(argv)
    try:
        if known.config is not None and argv and argv[0] in _SUBPARSERS:
            _SUBPARSERS[argv[0]].set_defaults(**load_config_file(known.config))
    except RsirError as exc:
        sys.stderr.write(f"rsir: error: {exc}\n")
        return 2
    args = parser.parse_args(argv)
    args.argv = argv
    if args.command == "run":
        args.given = given_flags(argv[argv.index("run") + 1:])
    if "data" in vars(args) and args.data is None:
        parser.error("--data is required (a benchmark name, 'synthetic' or a data file)")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except RsirError as exc:
        sys.stderr.write(f"rsir: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("rsir: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
