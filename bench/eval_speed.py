"""Wall time of one full-ranking evaluation of every user (all items ranked, history masked).

Usage: ``python bench/eval_speed.py CHECKPOINT --data beauty`` (a checkpoint from ``accuracy.py``
lies in ``bench/cache``). Runs ``--repeats`` times after one warm-up and reports the median; writes
``bench/results/eval-speed-<data>.json``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from rsir import jsonio
from rsir.checkpoint import load_checkpoint
from rsir.evaluation import evaluate
from rsir.resources import machine, peak_memory_mb
from rsir.sources import load_dataset

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--data", default="beauty")
    parser.add_argument("--data-dir")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    dataset = load_dataset(args.data, args.data_dir)
    model, _ = load_checkpoint(args.checkpoint)
    metrics = evaluate(model, dataset, "test").metrics()  # warm-up
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        evaluate(model, dataset, "test")
        seconds.append(time.perf_counter() - start)
    row = {"data": args.data, "users": dataset.num_real, "items": model.num_items, "seconds": seconds,
           "median_seconds": statistics.median(seconds), "test": metrics, "peak_memory_mb": peak_memory_mb(),
           "machine": machine(), "date": time.strftime("%Y-%m-%d")}
    out = HERE / "results" / f"eval-speed-{args.data}.json"
    jsonio.write(out, row)
    print(f"{args.data}: {row['users']} users × {row['items']} items ranked in {row['median_seconds']:.2f} s "
          f"(median of {args.repeats}); peak {row['peak_memory_mb']:.0f} MiB")


if __name__ == "__main__":
    main()
