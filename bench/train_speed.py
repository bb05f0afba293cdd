"""Training speed side by side: our SASRec and RecBole 1.2.1's on the same file and targets.

Usage: ``python bench/train_speed.py --data beauty --epochs 1 --concurrent`` (needs ``RSIR_DATA_DIR``
or ``--data-dir``). Runs RecBole's SASRec (in a venv of its own, made on first use) and ours through
the public API at the shared targets (full-softmax CE, hidden 64, 2 layers, 2 heads, dropout 0.2,
batch 256, max length 50, Adam 1e-3, leave-one-out full ranking, early stop on validation NDCG@20),
and ours with the strong config (``configs/beauty-sasrec-strong.toml``). ``--epochs N`` times N
epochs of RecBole and ``--our-epochs M`` M of ours; ``--full`` runs all to early stop.
``--concurrent`` runs RecBole beside ours (``--threads`` each, default 1), so that both see the same
load on a shared machine. ``--device cuda --systems rsir rsir_strong`` times ours on a GPU. Records
seconds per epoch (training alone and with validation, wall and CPU), epochs to the best, time to
early stop, peak RSS, test metrics and the speedup; writes
``bench/results/train-speed-<data>-<tag>.json``. docs/train-speed.md says what it measures.
"""

from __future__ import annotations

import argparse
import multiprocessing
import shutil
import statistics
import time
import tomllib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import train_speed_recbole as rb

from rsir import jsonio
from rsir.config import ModelConfig, TrainConfig, from_dict
from rsir.errors import RsirError
from rsir.evaluation import evaluate
from rsir.resources import machine, peak_memory_mb, resolve_device
from rsir.sources import BENCHMARKS, data_dir, load_dataset
from rsir.training import train

HERE = Path(__file__).resolve().parent
STRONG = HERE.parent / "configs" / "beauty-sasrec-strong.toml"
METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
TARGET_MODEL = ModelConfig(name="sasrec", dim=64, layers=2, heads=2, dropout=0.2, max_len=50)
TARGET_TRAIN = TrainConfig(loss="ce", batch_size=256, lr=1e-3)
SYSTEMS = ("rsir", "recbole", "rsir_strong")


def source_file(data: str, data_dir_: str | None) -> Path:
    """The sequence file behind ``data``: a benchmark's file in the data folder, or ``data`` itself."""
    if data in BENCHMARKS:
        root = data_dir(data_dir_)
        if root is None:
            raise rb.BenchError(f"benchmark {data!r}: set RSIR_DATA_DIR or pass --data-dir")
        path = root / BENCHMARKS[data].file
    else:
        path = Path(data)
    if not path.is_file():
        raise rb.BenchError(f"{path}: no such file (a benchmark name or a file of 'user item item ...' lines)")
    return path


def strong_configs(path: Path = STRONG) -> tuple[ModelConfig, TrainConfig]:
    """The ``[model]`` and ``[train]`` tables of a frozen experiment config."""
    raw = tomllib.loads(path.read_text())
    return from_dict(ModelConfig, raw["model"]), from_dict(TrainConfig, raw["train"])


def run_ours(data: str, data_dir_: str | None, model_config: ModelConfig, train_config: TrainConfig,
             threads: int, origin: float) -> dict[str, Any]:
    """Train ours with early stopping (in a fresh process: its peak RSS is its own), test the chosen
    epoch and time validation on its own; ``origin`` is the bench's start on the wall clock."""
    torch.set_num_threads(threads)
    started = time.time() - origin
    dataset = load_dataset(data, data_dir_)
    device = resolve_device(train_config.device)
    start_cpu = time.process_time()
    result = train(dataset, model_config, train_config, progress=False)
    fit_cpu, ended = time.process_time() - start_cpu, time.time() - origin
    test, unmasked = (evaluate(result.model, dataset, "test", mask, train_config.eval_batch_size, device).metrics()
                      for mask in (True, False))
    # validation runs inside each epoch; timed again here (same call: its cost does not depend on the weights)
    wall, cpu = [], []
    for _ in range(3):
        start, start_cpu = time.perf_counter(), time.process_time()
        evaluate(result.model, dataset, "valid", batch_size=train_config.eval_batch_size, device=device)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    valid, valid_cpu, epochs = statistics.median(wall), statistics.median(cpu), len(result.history)
    sequences, _ = dataset.training(model_config.max_len)
    seconds = {"train": [r.seconds - valid for r in result.history], "valid": [valid] * epochs,
               "train_cpu": [fit_cpu / epochs - valid_cpu] * epochs, "valid_cpu": [valid_cpu] * epochs}
    return row("rsir", {"model": asdict(model_config), "train": asdict(train_config)}, threads, seconds,
               best_epoch=result.best_epoch, stopped_by=result.stopped_by, fit_seconds=result.seconds,
               peak_rss_mb=peak_memory_mb(), valid=result.valid, test=test, test_unmasked=unmasked,
               wall_clock=[started, ended],
               counts={"users": dataset.num_real, "items": dataset.num_items, "test_users": dataset.num_real,
                       "train_targets": int((sequences.lengths - 1).clip(min=0).sum())})


def recbole_row(out: dict[str, Any], config: dict[str, Any], threads: int, wall_clock: list[float]) -> dict[str, Any]:
    """A RecBole result (``train_speed_recbole_run.py``) in the shape of ours."""
    seconds = {k: out[f"{k}_seconds"] for k in ("train", "valid", "train_cpu", "valid_cpu")}
    return row("recbole", config, threads, seconds, best_epoch=out["best_epoch"],
               stopped_by="max_epochs" if len(seconds["train"]) == config["epochs"] else "patience",
               fit_seconds=out["fit_seconds"], peak_rss_mb=out["peak_rss_mb"], valid=out["valid"], test=out["test"],
               test_unmasked=out["test_unmasked"], wall_clock=wall_clock,
               counts={k: out[k] for k in ("users", "items", "test_users", "train_targets")},
               extra={k: out[k] for k in ("prepare_seconds", "train_batches", "valid_ndcg@20", "versions")})


def row(system: str, config: dict[str, Any], threads: int, seconds: dict[str, list[float]], *, best_epoch: int,
        stopped_by: str, fit_seconds: float, peak_rss_mb: float, valid: dict[str, float], test: dict[str, float],
        test_unmasked: dict[str, float], wall_clock: list[float], counts: dict[str, int],
        extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One system's record from its per-epoch ``seconds`` (wall and CPU, training and validation);
    ``time_to_early_stop`` is None unless patience ended the run. ``test`` masks each user's earlier
    items, ``test_unmasked`` does not (RecBole's own protocol for sequential models)."""
    epoch = [t + v for t, v in zip(seconds["train"], seconds["valid"], strict=True)]
    epoch_cpu = [t + v for t, v in zip(seconds["train_cpu"], seconds["valid_cpu"], strict=True)]
    return {
        "system": system, "config": config, "threads": threads, "epochs": len(epoch),
        "best_epoch": best_epoch, "stopped_by": stopped_by,
        "seconds_per_epoch": statistics.mean(epoch), "train_seconds_per_epoch": statistics.mean(seconds["train"]),
        "valid_seconds": statistics.median(seconds["valid"]), "epoch_seconds": epoch,
        "cpu_seconds_per_epoch": statistics.mean(epoch_cpu),
        "train_cpu_seconds_per_epoch": statistics.mean(seconds["train_cpu"]),
        "time_to_early_stop": fit_seconds if stopped_by == "patience" else None, "fit_seconds": fit_seconds,
        "peak_rss_mb": peak_rss_mb, "valid": {k: valid[k] for k in METRICS if k in valid},
        "test": {k: test[k] for k in METRICS}, "test_unmasked": {k: test_unmasked[k] for k in METRICS},
        **counts, "wall_clock": wall_clock, **(extra or {}),
    }


def speedup(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float | None]:
    """How many times faster ours is: RecBole's seconds over ours, per epoch (wall and CPU) and to early stop."""
    stop = (theirs["time_to_early_stop"] / ours["time_to_early_stop"]
            if ours["time_to_early_stop"] and theirs["time_to_early_stop"] else None)
    return {"train_per_epoch": theirs["train_seconds_per_epoch"] / ours["train_seconds_per_epoch"],
            "per_epoch_with_validation": theirs["seconds_per_epoch"] / ours["seconds_per_epoch"],
            "train_cpu_per_epoch": theirs["train_cpu_seconds_per_epoch"] / ours["train_cpu_seconds_per_epoch"],
            "cpu_per_epoch_with_validation": theirs["cpu_seconds_per_epoch"] / ours["cpu_seconds_per_epoch"],
            "to_early_stop": stop}


def record(args: argparse.Namespace, counts: dict[str, int], runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The JSON record: settings, data, machine, each system's row, the speedup and the checks that
    RecBole ranked the same users over the same catalogue."""
    out: dict[str, Any] = {
        "data": args.data, "date": time.strftime("%Y-%m-%d"), "full": args.full, "epochs": args.epochs,
        "our_epochs": args.our_epochs, "threads": args.threads, "concurrent": args.concurrent,
        "dataset": counts, "machine": machine(), "runs": runs,
    }
    if "rsir" in runs and "recbole" in runs:
        ours, theirs = runs["rsir"], runs["recbole"]
        out["speedup"] = speedup(ours, theirs)
        out["comparable"] = {k: ours[k] == theirs[k] for k in ("users", "items", "test_users")}
    return out


def output_path(args: argparse.Namespace) -> Path:
    name = args.data if args.data in BENCHMARKS else Path(args.data).stem
    mode = "full" if args.full else f"epochs{args.epochs}"
    where = f"{args.threads}t" if args.device == "cpu" else args.device.replace(":", "")
    tag = args.tag or f"{mode}-{where}{'-concurrent' if args.concurrent else ''}"
    return HERE / "results" / f"train-speed-{name}-{tag}.json"


def run_all_ours(args: argparse.Namespace, epochs: int, origin: float) -> dict[str, dict[str, Any]]:
    """Ours at the shared targets and with the strong config, each in a fresh process, one after the
    other; to early stop with ``--full`` (the strong config with its own patience), else ``epochs``."""
    strong_model, strong_train = strong_configs()
    ours = {"rsir": (TARGET_MODEL, replace(TARGET_TRAIN, patience=args.patience)),
            "rsir_strong": (strong_model, strong_train)}
    runs = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        for system, (model_config, train_config) in ours.items():
            if system in args.systems:
                train_config = replace(train_config, max_epochs=epochs, seed=args.seed, device=args.device,
                                       patience=train_config.patience if args.full else epochs)
                runs[system] = pool.submit(run_ours, args.data, args.data_dir, model_config, train_config,
                                           args.threads, origin).result()
                print(f"{system}: {runs[system]['seconds_per_epoch']:.1f} s/epoch", flush=True)
    return runs


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen systems (RecBole beside ours with ``--concurrent``, else one after another)."""
    origin = time.time()
    name = args.data if args.data in BENCHMARKS else Path(args.data).stem
    epochs = args.max_epochs if args.full else args.epochs
    our_epochs = args.max_epochs if args.full else args.our_epochs
    patience = args.patience if args.full else max(epochs, our_epochs)  # a timing run never stops early
    work = args.work_dir.expanduser() / output_path(args).stem
    counts = rb.sequences_to_inter(source_file(args.data, args.data_dir), work / "data", name)
    runs: dict[str, dict[str, Any]] = {}
    recbole = None
    if "recbole" in args.systems:
        if args.device != "cpu":
            raise rb.BenchError(f"RecBole's venv here is CPU-only: time ours alone on {args.device} "
                                "(--systems rsir rsir_strong)")
        python = rb.ensure_venv(args.recbole_venv)
        config = rb.recbole_config(
            name, work / "data", dim=TARGET_MODEL.dim, layers=TARGET_MODEL.layers, heads=TARGET_MODEL.heads,
            dropout=TARGET_MODEL.dropout, max_len=TARGET_MODEL.max_len, batch_size=TARGET_TRAIN.batch_size,
            lr=TARGET_TRAIN.lr, epochs=epochs, patience=patience, seed=args.seed,
            eval_batch_size=TARGET_TRAIN.eval_batch_size, checkpoint_dir=work / "checkpoints")
        (work / "recbole" / "result.json").unlink(missing_ok=True)
        shutil.rmtree(work / "checkpoints", ignore_errors=True)  # an earlier run's, kept by RecBole
        started = time.time() - origin
        process = rb.start_recbole(python, config, work / "recbole", args.threads)
        if not args.concurrent:
            out = rb.finish_recbole(process, work / "recbole")
            runs["recbole"] = recbole_row(out, config, args.threads, [started, time.time() - origin])
        else:
            recbole = (process, config, started)
    try:
        runs.update(run_all_ours(args, our_epochs, origin))
    except BaseException:
        if recbole is not None:
            recbole[0].kill()  # never leave it running behind an error
        raise
    if recbole is not None:
        process, config, started = recbole
        out = rb.finish_recbole(process, work / "recbole")
        runs["recbole"] = recbole_row(out, config, args.threads, [started, time.time() - origin])
    return record(args, counts, {s: runs[s] for s in SYSTEMS if s in runs})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="beauty", help="a benchmark name or a file of 'user item item ...' lines")
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=1, help="epochs to time of each system (RecBole's: minutes)")
    parser.add_argument("--our-epochs", type=int, help="epochs to time of ours (default: --epochs)")
    parser.add_argument("--full", action="store_true", help="run every system to early stop instead")
    parser.add_argument("--max-epochs", type=int, default=TARGET_TRAIN.max_epochs, help="with --full")
    parser.add_argument("--patience", type=int, default=TARGET_TRAIN.patience,
                        help="with --full: validations without a better NDCG@20 before stopping (both systems)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--concurrent", action="store_true", help="run RecBole beside ours instead of before")
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="where ours trains: cpu, cuda, cuda:N (RecBole: cpu only)")
    parser.add_argument("--recbole-venv", type=Path, default=rb.DEFAULT_VENV)
    parser.add_argument("--work-dir", type=Path, default=Path("~/.cache/rsir-bench/work"),
                        help="RecBole's data, logs and checkpoints")
    parser.add_argument("--tag", help="names the result file (default: from the mode, threads and --concurrent)")
    args = parser.parse_args()
    args.our_epochs = args.our_epochs or args.epochs
    torch.set_num_threads(args.threads)  # so that machine() in the record states the per-process threads
    try:
        result = run(args)
    except (rb.BenchError, RsirError) as exc:
        parser.exit(1, f"error: {exc}\n")
    path = output_path(args)
    jsonio.write(path, result)
    for system, r in result["runs"].items():
        print(f"{system:11} {r['seconds_per_epoch']:7.1f} s/epoch ({r['train_seconds_per_epoch']:.1f} training), "
              f"best epoch {r['best_epoch']}/{r['epochs']}, peak {r['peak_rss_mb']:.0f} MiB, "
              f"test R@10 {r['test']['recall@10']:.4f} N@10 {r['test']['ndcg@10']:.4f}")
    if "speedup" in result:
        print(f"ours is {result['speedup']['train_per_epoch']:.1f}× faster per training epoch")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
