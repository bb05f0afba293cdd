"""Where the gains come from: test Recall@10 of saved RSIR and baseline rows by user group.

Users are split by how many items precede their test target (short histories are where sparse
data hurts), by how often the target item occurs in the training view (rare targets are where
generated data could add or take away signal), and by whether the target is the item that most
often follows the user's last item in the training view (the rule Insertion's inserted items come
from). Each variant is paired against the base on the same users, seeds pooled, so a group's
ΔR@10 and p-value read like the main table's. Reads the per-user ranks that bench/rsir_table.py
keeps; trains nothing. Writes ``bench/results/gains-by-group-{dataset}.json`` and ``.png``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import records
from accuracy import configs

from rsir import jsonio
from rsir.augmentation import most_frequent_successors
from rsir.evaluation import EvalResult, paired_test
from rsir.sources import load_dataset

matplotlib.use("Agg")
import matplotlib.pyplot as plt

VARIANTS = ["rsir1-w0.5", "insertion-w0.5", "reorder-w0.5", "rsir1-w0.5-ft", "insertion-w0.5-ft", "reorder-w0.5-ft",
            "rsir1-w0.5-lr0.3-ft", "insertion-w0.5-lr0.3-ft", "base-lr0.3-ft",  # -lr0.3: the gentler real-data stage
            "rsir2-w0.5-lr0.3-ft",  # two iterations, the fine-tuned student teaching the second
            "rsir1-w0.5-tau50-lr0.3-tft-ft"]  # one iteration, τ = 50, the fine-tuned base teaching (toys)
GROUPS = {  # name: [lower edges] (each bucket runs to the next edge)
    "history length": [4, 5, 7, 10, 20],  # every user has at least 5 items, so at least 4 before the target
    "target frequency in training": [0, 10, 20, 50, 100],
    "whether the target is the last item's top successor": [0, 1],
}
LABELS = {"whether the target is the last item's top successor": ["no", "yes"]}  # buckets named instead of numbered


def user_keys(dataset_name: str, data_dir: str | None, max_len: int) -> dict[str, np.ndarray]:
    """Per real user [U]: items before the test target, the target's count in the training view, and
    whether the target is the most frequent successor of the last item (1) or not (0) in the
    ``max_len``-item view the models and Insertion trained on."""
    data = load_dataset(dataset_name, data_dir)
    split = data.evaluation("test", max_len=1)
    counts = np.bincount(data.training(max_len=10**6)[0].values, minlength=data.num_items + 1)
    last = split.inputs.values[split.inputs.offsets[1:] - 1]  # [U]: every context holds its last item
    successor = most_frequent_successors(data, max_len)[last] == split.targets
    return {"history length": split.history.lengths, "target frequency in training": counts[split.targets],
            "whether the target is the last item's top successor": successor.astype(np.int64)}


def _label(name: str, edges: list[int], i: int) -> str:
    if name in LABELS:
        return LABELS[name][i]
    if i + 1 == len(edges):
        return f"≥{edges[i]}"
    return str(edges[i]) if edges[i + 1] - 1 == edges[i] else f"{edges[i]}–{edges[i + 1] - 1}"


def group_gains(rows: dict[str, dict[int, dict]], keys: dict[str, np.ndarray]) -> dict[str, list[dict]]:
    """For each grouping, per bucket: users, base R@10, and each variant's ΔR@10 and p against the
    base, paired over the seeds both have (users of those seeds pooled)."""
    base = {seed: records.ranks([r]).ranks for seed, r in rows["base"].items()}  # seed: [U]
    pairs = {}  # variant: (its seeds shared with the base, base ranks [S*U], its ranks [S*U])
    for variant, by_seed in rows.items():
        if variant != "base":
            seeds = sorted(set(by_seed) & set(base))
            pairs[variant] = (seeds, np.concatenate([base[s] for s in seeds]),
                              records.ranks([by_seed[s] for s in seeds]).ranks)
    every_base = np.concatenate(list(base.values()))
    out: dict[str, list[dict]] = {}
    for name, edges in GROUPS.items():
        bucket = np.digitize(keys[name], edges) - 1  # [U]
        out[name] = []
        for i in range(len(edges)):
            mask = bucket == i
            base_recall = EvalResult(every_base[np.tile(mask, len(base))]).metrics()["recall@10"]
            entry: dict[str, Any] = {"bucket": _label(name, edges, i), "users": int(mask.sum()),
                                     "base_recall@10": float(base_recall), "variants": {}}
            for variant, (seeds, theirs, ours) in pairs.items():
                pooled = np.tile(mask, len(seeds))
                test = paired_test(EvalResult(theirs[pooled]), EvalResult(ours[pooled]))
                entry["variants"][variant] = {"seeds": seeds, "relative": test["relative"], "p_ttest": test["p_ttest"]}
            out[name].append(entry)
    return out


def plot(dataset: str, gains: dict[str, list[dict]], path: Path) -> None:
    fig, axes = plt.subplots(1, len(gains), figsize=(6 * len(gains), 4), sharey=True)
    for ax, (name, buckets) in zip(np.atleast_1d(axes), gains.items(), strict=True):
        variants = list(buckets[0]["variants"])
        width = 0.8 / len(variants)
        for j, variant in enumerate(variants):
            ax.bar(np.arange(len(buckets)) + (j - (len(variants) - 1) / 2) * width,
                   [100 * b["variants"][variant]["relative"] for b in buckets], width,
                   label=f"{variant} ({len(buckets[0]['variants'][variant]['seeds'])} seeds)")
        ax.set_xticks(range(len(buckets)), [f"{b['bucket']}\n({b['users']} users)" for b in buckets], fontsize=8)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xlabel(name)
        ax.set_ylabel("ΔR@10 vs base (%)")
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    ncol = min(len(labels), 5)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8)  # below: bars stay clear
    fig.suptitle(f"{dataset}: test Recall@10 against the base, by user group (paired over shared seeds)")
    fig.tight_layout(rect=(0, 0.04 * math.ceil(len(labels) / ncol), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["beauty", "sports", "toys"])
    parser.add_argument("--model", default="sasrec")
    parser.add_argument("--setting", default="strong")
    parser.add_argument("--variants", nargs="+", default=VARIANTS)
    parser.add_argument("--data-dir", help="benchmark data folder (default: $RSIR_DATA_DIR)")
    args = parser.parse_args()
    max_len = configs(args.setting, args.model, 0)[0].max_len  # the rows' training view
    for dataset in args.datasets:
        rows: dict[str, dict[int, dict]] = {v: {} for v in ["base", *args.variants]}
        for r in records.load(f"rsir/{dataset}-{args.model}-{args.setting}-seed*.json"):
            if (variant := records.variant(r)) in rows:
                rows[variant][r["seed"]] = r
        rows = {v: by_seed for v, by_seed in rows.items() if set(by_seed) & set(rows["base"])}
        if len(rows) < 2:
            print(f"{dataset}: no variant shares a seed with the base; skipped")
            continue
        gains = group_gains(rows, user_keys(dataset, args.data_dir, max_len))
        stem = records.RESULTS / f"gains-by-group-{dataset}"
        jsonio.write(stem.with_suffix(".json"), {"dataset": dataset, "model": args.model, "setting": args.setting,
                                                 "groups": gains, "date": time.strftime("%Y-%m-%d")})
        plot(dataset, gains, stem.with_suffix(".png"))
        print(f"{dataset}: {[v for v in rows if v != 'base']} → {stem}.json and .png")


if __name__ == "__main__":
    main()
