"""Peak memory of generation as the catalogue grows to a million items.

Usage: ``python bench/generation_memory.py [--items 10000 100000 1000000]``. Each catalogue size runs
in a fresh process (the peak resident set only ever grows) on seeded synthetic users and an
untrained SASRec, with τ = ∞ so that every row decodes until its own pool runs dry: the deepest
decode, the most contexts. Reports the process's peak resident set before and after generation,
and what one unchunked [rows, V] score matrix would take instead. Writes
``bench/results/generation-memory.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(items: int, users: int, m: int) -> dict:
    import torch

    from rsir.config import GenerationConfig, ModelConfig
    from rsir.generation import generate
    from rsir.models import build_model
    from rsir.resources import machine, peak_memory_mb
    from rsir.synthetic import synthetic_dataset

    torch.manual_seed(0)
    data = synthetic_dataset(num_users=users, num_items=items, num_clusters=8, seed=0)
    model = build_model(ModelConfig(name="sasrec", dim=64), data.num_items).eval()
    config = GenerationConfig(tau=math.inf, p=0.5, m=m)
    before = peak_memory_mb()
    start = time.perf_counter()
    stats = None
    for batch in generate(model, data, config):
        stats = batch.stats
    assert stats is not None, "generation emitted no batch"
    return {"items": items, "users": users, "rows": stats.rows, "accepted_steps": stats.accepted_steps,
            "seconds": time.perf_counter() - start, "peak_mb_before": before, "peak_mb_after": peak_memory_mb(),
            "item_table_mb": model.item_table().numel() * model.item_table().element_size() / 2**20,
            "unchunked_scores_mb": min(config.decode_rows, stats.rows) * (items + 1) * 4 / 2**20,
            "machine": machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", nargs="+", type=int, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--users", type=int, default=40)
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.users, args.m)))
        return
    rows = []
    for items in args.items:
        out = subprocess.run([sys.executable, __file__, "--child", str(items), "--users", str(args.users),
                              "--m", str(args.m)], capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{items} items: peak {r['peak_mb_before']:.0f} → {r['peak_mb_after']:.0f} MiB in {r['seconds']:.1f} s "
              f"(one unchunked score matrix: {r['unchunked_scores_mb']:.0f} MiB)", flush=True)
    from rsir import jsonio  # light: the parent process stays free of torch

    jsonio.write(HERE / "results" / "generation-memory.json", {"runs": rows, "date": time.strftime("%Y-%m-%d")})


if __name__ == "__main__":
    main()
