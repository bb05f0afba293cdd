"""PNG figures of a loop report: metrics and data growth per iteration (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_iterations(report: dict[str, Any], path: str | Path, title: str = "") -> Path:
    """Two panels: NDCG@10 / Recall@10 (valid and test) and dataset size per iteration."""
    rows = report["iterations"]
    ks = [r["iteration"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.3))
    for split, style in (("valid", "--"), ("test", "-")):
        for metric, color in (("ndcg@10", "tab:blue"), ("recall@10", "tab:orange")):
            left.plot(ks, [r[split][metric] for r in rows], style, color=color, marker="o", label=f"{split} {metric}")
    left.axvline(report["selected"], color="grey", lw=0.8, ls=":", label="selected (valid)")
    left.set(xlabel="iteration", ylabel="metric", title="accuracy", xticks=ks)
    left.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.17))
    right.plot(ks, [r["dataset"]["interactions"] for r in rows], marker="o", label="interactions")
    right.set(xlabel="iteration", ylabel="interactions", title="data growth", xticks=ks)
    twin = right.twinx()
    twin.plot(ks, [r["dataset"]["apen"] for r in rows], color="tab:green", marker="s", label="ApEn")
    twin.set_ylabel("mean ApEn (m=2, r=0)")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
