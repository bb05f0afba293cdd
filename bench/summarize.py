"""Turn bench/results/*.json into the tables of docs/results.md (run after any benchmark)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
DOC = HERE.parent / "docs" / "results.md"

PAPER_TABLE1 = {  # the RSIR paper's base rows (Table 1), Recall@10 / NDCG@10
    ("beauty", "sasrec"): (0.0548, 0.0290), ("beauty", "cl4srec"): (0.0579, 0.0307),
    ("beauty", "hstu"): (0.0568, 0.0302), ("sports", "sasrec"): (0.0474, 0.0271),
    ("sports", "cl4srec"): (0.0491, 0.0284), ("sports", "hstu"): (0.0492, 0.0285),
    ("toys", "sasrec"): (0.0795, 0.0477), ("toys", "cl4srec"): (0.0870, 0.0519),
    ("toys", "hstu"): (0.0869, 0.0512),
}


def _load(pattern: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob(pattern))]


def accuracy_table() -> str:
    rows = _load("accuracy-*.json")
    if not rows:
        return "_no accuracy results yet_\n"
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["setting"], r["dataset"], r["model"])].append(r)
    lines = ["| setting | dataset | model | seeds | test Recall@10 | test NDCG@10 | paper base R@10 / N@10 | "
             "epochs (best) | s/epoch | minutes | peak MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (setting, dataset, model), rs in sorted(groups.items()):
        recall = np.mean([r["test"]["recall@10"] for r in rs])
        ndcg = np.mean([r["test"]["ndcg@10"] for r in rs])
        paper = PAPER_TABLE1.get((dataset, model))
        paper_s = f"{paper[0]:.4f} / {paper[1]:.4f}" if paper else "–"
        lines.append(
            f"| {setting} | {dataset} | {model} | {len(rs)} | {recall:.4f} | {ndcg:.4f} | {paper_s} | "
            f"{np.mean([r['epochs'] for r in rs]):.0f} ({np.mean([r['best_epoch'] for r in rs]):.0f}) | "
            f"{np.mean([r['seconds_per_epoch'] for r in rs]):.1f} | "
            f"{np.mean([r['train_seconds'] for r in rs]) / 60:.1f} | "
            f"{max(r['peak_memory_mb'] for r in rs):.0f} |")
    machine = rows[-1]["machine"]
    lines.append(f"\nMachine: {machine['cpu']}, {machine['cores']} cores, {machine['torch_threads']} torch threads, "
                 f"torch {machine['torch']}, GPU: {machine['cuda'] or 'none'}.")
    return "\n".join(lines) + "\n"


def generation_table() -> str:
    rows = _load("generation-speed-*.json")
    if not rows:
        return "_no generation results yet_\n"
    lines = ["| data | rows | batched s | rows/s | oracle rows/s | speed-up | oracle agrees | peak MiB |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['data']} | {r['rows']} | {r['batched_seconds']:.1f} | {r['batched_rows_per_s']:.0f} | "
                     f"{r['oracle_rows_per_s']:.0f} | {r['speedup']:.0f}× | {r['oracle_agrees_on_subset']} | "
                     f"{r['peak_memory_mb']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(
        "# Results\n\nProduced by `python bench/summarize.py` from `bench/results/*.json`; rerun the scripts in "
        "`bench/` to reproduce. Test metrics are full-ranking leave-one-out with the user's history masked, at the "
        "epoch chosen on validation NDCG@20.\n\n## Backbones (bench/accuracy.py)\n\n" + accuracy_table()
        + "\n## Generation speed (bench/generation_speed.py)\n\n" + generation_table())


if __name__ == "__main__":
    main()
