"""A whole ``rsir run`` timed end to end → bench/results/run-timing-<dataset>-<recipe>-seed<seed>.json.

Runs the product's command in a child process at ``--threads`` torch threads and records its wall
time, CPU time and peak resident memory (of the child, from ``getrusage``) beside the run's own
report: each stage's seconds, epochs and test metrics, and the paired test of the selected iteration.

    python bench/run_timing.py --data beauty --recipe beauty-fast --seed 0 --threads 2
    python bench/run_timing.py --data beauty --recipe beauty --tag k3-cuda --iterations 3 --device cuda

Any other flag goes to ``rsir run`` as it is (``--iterations``, ``--device``, any recipe override);
``--tag`` then names the record apart.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rsir import jsonio
from rsir.precision import compute_dtype
from rsir.resources import machine, resolve_device
from rsir.sources import BENCHMARKS

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="beauty")
    parser.add_argument("--recipe", help="default: the dataset's own")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-dir", help="default: $RSIR_DATA_DIR")
    parser.add_argument("--tag", default="", help="suffix of the record's name, for runs with other flags")
    args, extra = parser.parse_known_args()
    flags = ["--data", args.data, "--seed", str(args.seed), *(["--recipe", args.recipe] if args.recipe else []),
             *extra]
    with tempfile.TemporaryDirectory(prefix="rsir-run-timing-") as out:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "rsir.cli", "run", *flags, "--out", out, "-q",
                               *(["--data-dir", args.data_dir] if args.data_dir else [])],
                              capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
        wall = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"rsir run failed ({done.returncode}): {done.stderr[-3000:]}")
        report = jsonio.loads((Path(out) / "report.json").read_text())
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    train = report["config"]["train"]
    record = {"command": f"OMP_NUM_THREADS={args.threads} rsir run {' '.join(flags)}",
              "date": time.strftime("%Y-%m-%d"),
              "machine": {**machine(), "torch_threads": args.threads,
                          "compute_dtype": str(compute_dtype(train["precision"], resolve_device(train["device"])))},
              "wall_seconds": wall, "cpu_seconds": usage.ru_utime + usage.ru_stime,
              "peak_rss_mb": usage.ru_maxrss / 1024, "report": report}
    tag = f"-{args.tag.lstrip('-')}" if args.tag else ""
    data = args.data if args.data in BENCHMARKS or args.data == "synthetic" else Path(args.data).stem
    name = f"run-timing-{data}-{report.get('recipe', args.recipe)}-seed{args.seed}{tag}.json"
    jsonio.write(HERE / "results" / name, record)
    print(f"{wall:.0f} s wall, {record['cpu_seconds']:.0f} CPU s, peak {record['peak_rss_mb']:.0f} MiB → {name}")


if __name__ == "__main__":
    main()
