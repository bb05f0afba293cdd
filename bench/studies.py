"""The paper's studies, read from bench/results/rsir/*.json: Markdown tables and PNGs.

* sweeps of τ and of p around the default recipe (paper Tables 7 and 8, Fig. 3);
* recursion over iterations (Table 6 and Fig. 6);
* the fidelity check on and off over iterations (Table 2: a τ = ∞ run against its partner);
* teacher × student: how much one backbone's generated data lifts another (Fig. 4).

Every gain is paired against the student's own base model on the same users, seeds pooled; a
study appears once its results exist (a sweep needs three values, a recursion two iterations, a
matrix two teachers).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path

import matplotlib
import numpy as np
import records

from rsir.config import GenerationConfig
from rsir.plots import plot_iterations

matplotlib.use("Agg")
import matplotlib.pyplot as plt

METRICS = ("ndcg@10", "ndcg@20", "recall@10", "recall@20")
DEFAULT = asdict(GenerationConfig())
UNUSED = {"seed", "batch_rows"}  # vary per run, or leave the generated data as it is
SWEPT = {"tau": "τ", "p": "p"}


def _bases() -> dict[tuple, dict]:
    """The plain base rows (a tagged base, e.g. ``base-ft``, trained otherwise)."""
    return {(r["dataset"], r["model"], r["setting"], r["seed"]): r for r in records.load("rsir/*.json")
            if r["method"] == "base" and not r.get("tag")}


def _mean(rows: list[dict], split: str = "test") -> dict[str, float]:
    return {m: float(np.mean([r[split][m] for r in rows])) for m in METRICS}


def _gain(before: list[dict], after: list[dict]) -> str:
    """ΔR@10 of ``after`` against ``before`` (rows paired by seed), with the paired t-test's p."""
    test = records.paired(before, after)
    return f"{100 * test['relative']:+.1f} % | {test['p_ttest']:.3f}"


def _cells(rows: list[dict]) -> str:
    mean = _mean(rows)
    return " | ".join(f"{mean[m]:.4f}" for m in METRICS)


def _recipe(row: dict, free: str = "") -> tuple:
    """What generated the row's data, but for ``free`` and the settings that leave data unchanged."""
    gen = {k: v for k, v in row["generation"].items() if k not in UNUSED | {free}}
    return (*sorted(gen.items()), ("synthetic_weight", row.get("synthetic_weight", 1.0)))


def sweeps() -> str:
    """τ and p, each varied alone around the default recipe, one RSIR iteration (Tables 7, 8)."""
    bases = _bases()
    groups: dict[tuple, dict[float, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in records.load("rsir/*.json"):
        if r["method"] != "rsir" or r["iteration"] != 1 or r.get("teacher", r["model"]) != r["model"]:
            continue
        for param in SWEPT:
            default = {k: v for k, v in DEFAULT.items() if k not in UNUSED | {param}}
            if dict(_recipe(r, param)) == default | {"synthetic_weight": r.get("synthetic_weight", 1.0)}:
                key = (r["dataset"], r["model"], r["setting"], r.get("synthetic_weight", 1.0), param)
                groups[key][r["generation"][param]].append(r)
    lines = ["| dataset | model | setting | swept | value | seeds | added | valid N@20 | test N@10 | N@20 | R@10 | "
             "R@20 | ΔR@10 vs base | p (t-test) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    figures: dict[tuple, dict[str, tuple]] = defaultdict(dict)
    for (dataset, model, setting, weight, param), by_value in sorted(groups.items()):
        # the seeds every value has, so that validation compares the values on equal terms
        seeds = sorted(set.intersection(*({r["seed"] for r in rs} for rs in by_value.values())))
        if len(by_value) < 3 or not seeds:
            continue
        by_value = {v: [r for r in rs if r["seed"] in seeds] for v, rs in by_value.items()}
        name = SWEPT[param] + ("" if weight == 1.0 else f" (w {weight})")
        base = [bases[(dataset, model, setting, s)] for s in seeds]
        lines.append(f"| {dataset} | {model} | {setting} | {name} | base | {len(base)} | 0 | "
                     f"{_mean(base, 'valid')['ndcg@20']:.4f} | {_cells(base)} | – | – |")
        chosen = max(by_value, key=lambda v: _mean(by_value[v], "valid")["ndcg@20"])
        for value, rs in sorted(by_value.items()):
            paired = [bases[(dataset, model, setting, r["seed"])] for r in rs]
            lines.append(f"| {dataset} | {model} | {setting} | {name} | {value:g}{' ✓' if value == chosen else ''} | "
                         f"{len(rs)} | {np.mean([r['merge']['added'] for r in rs]):.0f} | "
                         f"{_mean(rs, 'valid')['ndcg@20']:.4f} | {_cells(rs)} | {_gain(paired, rs)} |")
        figures[(dataset, model, setting, weight)][param] = (
            sorted(by_value), [{k: _mean(by_value[v], k) for k in ("test", "valid")} for v in sorted(by_value)],
            {k: _mean(base, k) for k in ("test", "valid")})
    for (dataset, model, setting, weight), panels in figures.items():
        _plot_sweeps(panels, records.RESULTS / f"sweeps-{dataset}-{model}-{setting}-w{weight:g}.png",
                     f"{dataset}, {model} ({setting}), one RSIR iteration, synthetic weight {weight:g}")
    return ("\n".join(lines) + "\n\nEach sweep uses the seeds all its values have; ✓ marks the value "
            "validation NDCG@20 picks.\n" if len(lines) > 2
            else "_no sweep with three values yet_\n")


def _plot_sweeps(panels: dict[str, tuple], path: Path, title: str) -> None:
    """Each swept setting's change against the base, in %, on one scale for every metric."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    curves = (("test", "recall@10", "tab:orange"), ("test", "ndcg@10", "tab:blue"), ("valid", "ndcg@20", "tab:grey"))
    for ax, (param, (values, means, base)) in zip(axes[0], sorted(panels.items(), reverse=True), strict=True):
        for split, metric, color in curves:
            change = [100 * (m[split][metric] / base[split][metric] - 1) for m in means]
            ax.plot(values, change, marker="o", color=color, label=f"{split} {metric}")
        ax.axhline(0, color="black", lw=0.8, label="base")
        if param == "tau":
            ax.set_xscale("log")
        ax.set(xlabel=SWEPT[param], ylabel="change against the base (%)", title=f"{SWEPT[param]}, others at defaults")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def recursion() -> str:
    """Runs of K ≥ 2 iterations: each iteration against the one before (Table 6) and the one
    validation would pick; a PNG of metrics and data growth per run."""
    bases = _bases()
    runs: dict[tuple, dict[int, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in records.load("rsir/*.json"):
        if r["method"] == "rsir":
            run = (r["dataset"], r["model"], r["setting"], r.get("tag", ""), r.get("teacher", r["model"]))
            runs[run][r["iteration"]][r["seed"]] = r
    lines = ["| dataset | model | setting | run | k | seeds | added | valid N@20 | test N@10 | N@20 | R@10 | R@20 | "
             "ΔR@10 vs k − 1 | p (t-test) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, model, setting, tag, teacher), by_k in sorted(runs.items()):
        if len(by_k) < 2 or sorted(by_k) != list(range(1, len(by_k) + 1)):
            continue
        seeds = sorted(set.intersection(*(set(rows) for rows in by_k.values())))
        steps = [[bases[(dataset, model, setting, s)] for s in seeds]]
        steps += [[by_k[k][s] for s in seeds] for k in sorted(by_k)]
        valid = [_mean(rows, "valid")["ndcg@20"] for rows in steps]
        chosen = int(np.argmax(valid))
        name = (tag.lstrip("-") or "default") + ("" if teacher == model else f", teacher {teacher}")
        for k, rows in enumerate(steps):
            added = np.mean([r.get("merge", {}).get("added", 0) for r in rows])
            gain = _gain(steps[k - 1], rows) if k else "– | –"
            lines.append(f"| {dataset} | {model} | {setting} | {name} | {k}{' ✓' if k == chosen else ''} | "
                         f"{len(rows)} | {added:.0f} | {valid[k]:.4f} | {_cells(rows)} | {gain} |")
        report = {"selected": chosen, "iterations": [
            {"iteration": k, "valid": _mean(rows, "valid"), "test": _mean(rows),
             "dataset": {key: float(np.mean([r["data"][key] for r in rows])) for key in ("interactions", "apen")}}
            for k, rows in enumerate(steps)]}
        plot_iterations(report, records.RESULTS / f"iterations-{dataset}-{model}-{setting}{tag}.png",
                        title=f"RSIR on {dataset}: {model} ({setting}), {name}")
    return ("\n".join(lines) + "\n\n✓ marks the iteration validation NDCG@20 picks.\n" if len(lines) > 2
            else "_no run of two or more iterations yet_\n")


def fidelity_ablation() -> str:
    """With and without the fidelity check over iterations (paper Table 2): a run tagged
    ``-no-fidelity<rest>`` (τ = ∞: every generated step kept) against the run tagged
    ``-fidelity<rest>``, else ``<rest>``, iteration by iteration, paired over the seeds both ran;
    a PNG of test R@10 and NDCG@10 per iteration."""
    bases = _bases()
    runs: dict[tuple, dict[int, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in records.load("rsir/*.json"):
        if r["method"] == "rsir" and r.get("teacher", r["model"]) == r["model"]:
            runs[(r["dataset"], r["model"], r["setting"], r.get("tag", ""))][r["iteration"]][r["seed"]] = r
    lines = ["| dataset | model | setting | run | k | seeds | added w/o | added w | w/o N@10 | w/o R@10 | w N@10 | "
             "w R@10 | ΔR@10 w vs w/o | p (t-test) |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, model, setting, tag), without in sorted(runs.items()):
        if not tag.startswith("-no-fidelity"):
            continue
        rest = tag.removeprefix("-no-fidelity")
        key = next((k for k in ((dataset, model, setting, f"-fidelity{rest}"), (dataset, model, setting, rest))
                    if k in runs), None)
        if key is None:
            continue
        ks = [k for k in sorted(without) if k in runs[key]]
        seeds = sorted(set.intersection(*(set(arm[k]) for arm in (without, runs[key]) for k in ks)))
        seeds = [s for s in seeds if (dataset, model, setting, s) in bases]
        if not ks or not seeds:
            continue
        base = [bases[(dataset, model, setting, s)] for s in seeds]
        arms = {"w/o": [base] + [[without[k][s] for s in seeds] for k in ks],
                "w": [base] + [[runs[key][k][s] for s in seeds] for k in ks]}
        for k in range(len(ks) + 1):
            cells = " | ".join(f"{_mean(arms[a][k])['ndcg@10']:.4f} | {_mean(arms[a][k])['recall@10']:.4f}"
                               for a in ("w/o", "w"))
            added = " | ".join(f"{np.mean([r.get('merge', {}).get('added', 0) for r in arms[a][k]]):.0f}"
                               for a in ("w/o", "w"))
            gain = _gain_or_means(arms["w/o"][k], arms["w"][k]) if k else "– | –"
            lines.append(f"| {dataset} | {model} | {setting} | {tag.lstrip('-')} | {k} | {len(seeds)} | {added} | "
                         f"{cells} | {gain} |")
        _plot_ablation(arms, records.RESULTS / f"fidelity-{dataset}-{model}-{setting}{rest}.png",
                       f"{dataset}, {model} ({setting}){f', {rest[1:]}' if rest else ''}, "
                       f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}")
    return ("\n".join(lines) + "\n" if len(lines) > 2 else "_no run without the fidelity check yet_\n")


def _gain_or_means(before: list[dict], after: list[dict]) -> str:
    """``_gain``, or the change of the mean R@10 with no p where neither ranks nor a recorded test exist
    (rows from before the tests were recorded)."""
    try:
        return _gain(before, after)
    except FileNotFoundError:
        change = _mean(after)["recall@10"] / _mean(before)["recall@10"] - 1
        return f"{100 * change:+.1f} % | – (no ranks)"


def _plot_ablation(arms: dict[str, list[list[dict]]], path: Path, title: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, metric in zip(axes, ("recall@10", "ndcg@10"), strict=True):
        for arm, style in (("w", "-o"), ("w/o", "--s")):
            ax.plot(range(len(arms[arm])), [_mean(rows)[metric] for rows in arms[arm]], style,
                    label=f"{arm} fidelity check")
        ax.set(xlabel="iteration K", ylabel=f"test {metric}", xticks=range(len(arms["w"])))
        ax.legend(fontsize=8)
    fig.suptitle(f"Fidelity check on and off (paper Table 2): {title}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def teacher_student() -> str:
    """One RSIR iteration where the data comes from another backbone's base model (Fig. 4): the
    student's ΔR@10 against its own base (the run's ``base<tag>`` row where it has one), for every
    teacher that ran with the same recipe. A study is the rows' tag less ``-teacher-<name>``, so a
    rerun of the matrix under its own tag (``-fig4``) stands apart from older rows."""
    bases = _bases()
    loaded = records.load("rsir/*.json")
    own = {records.name(r): r for r in loaded if r["method"] == "base"}
    groups: dict[tuple, dict[tuple[str, str], list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in loaded:
        if r["method"] == "rsir" and r["iteration"] == 1:
            study = re.sub(r"-teacher-[a-z0-9]+", "", r.get("tag", ""))
            cell = (r.get("teacher", r["model"]), r["model"])
            groups[(r["dataset"], r["setting"], study, _recipe(r))][cell].append(r)

    def base_of(r: dict) -> dict:
        mine = own.get(records.name({**r, "method": "base"}))
        return mine if mine is not None else bases[(r["dataset"], r["model"], r["setting"], r["seed"])]

    out = []
    for (dataset, setting, study, recipe), cells in sorted(groups.items()):
        teachers = sorted({t for t, _ in cells})
        students = sorted({s for _, s in cells})
        if all(t == s for t, s in cells):  # every student taught itself: no matrix to show
            continue
        gains = np.full((len(teachers), len(students)), np.nan)
        rows = [f"| teacher ↓ student → | {' | '.join(students)} |", "|---" * (len(students) + 1) + "|"]
        for i, teacher in enumerate(teachers):
            texts = []
            for j, student in enumerate(students):
                rs = sorted(cells.get((teacher, student), []), key=lambda r: r["seed"])
                if not rs:
                    texts.append("–")
                    continue
                test = records.paired([base_of(r) for r in rs], rs)
                gains[i, j] = 100 * test["relative"]
                seeds = f"{len(rs)} seed{'s' if len(rs) > 1 else ''}"
                texts.append(f"{gains[i, j]:+.1f} % (p = {test['p_ttest']:.3f}, "
                             f"R@10 {_mean(rs)['recall@10']:.4f}, {seeds})")
            rows.append(f"| {teacher} | {' | '.join(texts)} |")
        settings = dict(recipe)
        label = (f"{dataset}, {setting} setting{f', rows tagged {study}' if study else ''}, τ = {settings['tau']:g}, "
                 f"p = {settings['p']:g}, m = {settings['m']}, synthetic weight {settings['synthetic_weight']:g}")
        out.append(f"{label}: ΔR@10 of the student against its own base\n\n" + "\n".join(rows) + "\n")
        _plot_matrix(gains, teachers, students, records.RESULTS / f"teacher-student-{dataset}-{setting}{study}.png",
                     label)
    return "\n".join(out) if out else "_no student taught by another backbone yet_\n"


def _plot_matrix(gains: np.ndarray, teachers: list[str], students: list[str], path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(1.8 * len(students) + 2, 1.2 * len(teachers) + 1.2))
    limit = max(1.0, float(np.nanmax(np.abs(gains))))
    ax.imshow(gains, cmap="RdYlGn", vmin=-limit, vmax=limit)
    for (i, j), value in np.ndenumerate(gains):
        ax.text(j, i, "–" if np.isnan(value) else f"{value:+.1f} %", ha="center", va="center")
    ax.set_xticks(range(len(students)), students)
    ax.set_yticks(range(len(teachers)), teachers)
    ax.set(xlabel="student", ylabel="teacher")
    ax.set_title(f"ΔR@10 vs the student's base\n{title}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def user_groups() -> str:
    """ΔR@10 against the base by user group (bench/gains_by_group.py), one table per dataset and grouping."""
    out = []
    for r in records.load("gains-by-group-*.json"):
        for name, buckets in r["groups"].items():
            variants = list(buckets[0]["variants"])
            seeds = " · ".join(f"{v}: {len(buckets[0]['variants'][v]['seeds'])}" for v in variants)
            out += [f"**{r['dataset']}, by {name}** (seeds {seeds}; ΔR@10 vs base, paired t-test p; "
                    f"`gains-by-group-{r['dataset']}.png`)\n",
                    "| bucket | users | base R@10 | " + " | ".join(variants) + " |",
                    "|---|---|---|" + "---|" * len(variants)]
            out += [f"| {b['bucket']} | {b['users']} | {b['base_recall@10']:.4f} | " + " | ".join(
                f"{100 * b['variants'][v]['relative']:+.1f} % ({b['variants'][v]['p_ttest']:.3f})" for v in variants)
                + " |" for b in buckets]
            out.append("")
    return "\n".join(out) if out else "_no grouped results yet_\n"
