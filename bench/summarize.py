"""Turn bench/results/*.json into docs/results.md (run after any benchmark).

Paired tests read the per-user ranks under bench/results/rsir/ranks when they are there (they stay
out of git) and otherwise the tests recorded in bench/results/paired-tests.json, which every
run rewrites (``records.paired``). The README's headline table is written by hand.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import records
import studies
import tune

HERE = Path(__file__).resolve().parent
DOC = HERE.parent / "docs" / "results.md"

PAPER_TABLE1 = {  # the RSIR paper's base rows (Table 1), Recall@10 / NDCG@10
    ("beauty", "sasrec"): (0.0548, 0.0290), ("beauty", "cl4srec"): (0.0579, 0.0307),
    ("beauty", "hstu"): (0.0568, 0.0302), ("sports", "sasrec"): (0.0474, 0.0271),
    ("sports", "cl4srec"): (0.0491, 0.0284), ("sports", "hstu"): (0.0492, 0.0285),
    ("toys", "sasrec"): (0.0795, 0.0477), ("toys", "cl4srec"): (0.0870, 0.0519),
    ("toys", "hstu"): (0.0869, 0.0512),
}


def _cpu(row: dict) -> str:
    """``Intel(R) Xeon(R) Processor`` → ``Intel Xeon``: the CPU a row's times were measured on."""
    return row["machine"]["cpu"].replace("(R)", "").replace(" Processor", "")


def accuracy_table() -> str:
    rows = records.load("accuracy-*.json")
    if not rows:
        return "_no accuracy results yet_\n"
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:  # CL4SRec's contrastive weight is named: its rows have been trained with more than one
        label = r["model"] + (f" (λ {r['model_config']['cl_weight']:g})" if r["model"] == "cl4srec" else "")
        label += " (stopped by its time budget)" if r.get("stopped_by") == "time_budget" else ""
        groups[(r["setting"], r["dataset"], r["model"], label)].append(r)
    lines = ["| setting | dataset | model | seeds | test Recall@10 | test NDCG@10 | paper base R@10 / N@10 | "
             "epochs (best) | s/epoch | minutes | threads | peak MiB | CPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (setting, dataset, model, label), rs in sorted(groups.items()):
        recall = np.mean([r["test"]["recall@10"] for r in rs])
        ndcg = np.mean([r["test"]["ndcg@10"] for r in rs])
        paper = PAPER_TABLE1.get((dataset, model))
        paper_s = f"{paper[0]:.4f} / {paper[1]:.4f}" if paper else "–"
        lines.append(
            f"| {setting} | {dataset} | {label} | {len(rs)} | {recall:.4f} | {ndcg:.4f} | {paper_s} | "
            f"{np.mean([r['epochs'] for r in rs]):.0f} ({np.mean([r['best_epoch'] for r in rs]):.0f}) | "
            f"{np.mean([r['seconds_per_epoch'] for r in rs]):.1f} | "
            f"{np.mean([r['train_seconds'] for r in rs]) / 60:.1f} | {rs[0]['machine']['torch_threads']} | "
            f"{max(r['peak_memory_mb'] for r in rs):.0f} | {', '.join(sorted({_cpu(r) for r in rs}))} |")
    machines = sorted({(m["cores"], m["torch"], m["cuda"] or "none") for m in (r["machine"] for r in rows)})
    lines.append("\nMachines: " + "; ".join(f"{c} cores, torch {t}, GPU: {g}" for c, t, g in machines)
                 + ". Runs with 1 thread shared the machine with other work (their seconds are an upper bound; "
                 "compare times only on one CPU).")
    return "\n".join(lines) + "\n"


def generation_table() -> str:
    rows = records.load("generation-speed-*.json")
    lines = [f"- Full-ranking evaluation of all {r['users']} {r['data']} users over {r['items']} items: "
             f"{r['median_seconds']:.2f} s ({r['machine']['torch_threads']} threads, bench/eval_speed.py)."
             for r in records.load("eval-speed-*.json")] + [""]
    if not rows:
        return "\n".join(lines) + "_no generation results yet_\n"
    lines += ["| data | rows | batched s (1 thread / best) | best threads (= workers) | rows/s | oracle rows/s "
              "(best thread count) | speed-up (best / 1 thread each) | oracle agrees | scorer (product × block) | "
              "peak MiB | machine | date |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        by_threads = r.get("batched_seconds_by_threads", {"1": r["batched_seconds"]})
        one = f"{r['speedup_one_thread']:.0f}×" if "speedup_one_thread" in r else "–"
        scorer = f"{r['scorer']['product']} × {r['scorer']['block_rows']}" if "scorer" in r else "–"
        lines.append(f"| {r['data']} | {r['rows']} | {by_threads['1']:.1f} / {r['batched_seconds']:.1f} | "
                     f"{r['batched_threads']} | {r['batched_rows_per_s']:.0f} | "
                     f"{r['oracle_rows_per_s']:.0f} | {r['speedup']:.0f}× / {one} | {r['oracle_agrees_on_subset']} | "
                     f"{scorer} | {r['peak_memory_mb']:.0f} | {r['machine']['cpu']} | {r['date']} |")
    for doc in records.load("generation-memory.json"):
        lines += ["", "Peak resident memory of generation by catalogue size (bench/generation_memory.py, τ = ∞, "
                  f"untrained SASRec, {doc['date']}):", "",
                  "| items | rows | peak MiB before → after | item table MiB | one unchunked score matrix MiB | s |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r['items']} | {r['rows']} | {r['peak_mb_before']:.0f} → {r['peak_mb_after']:.0f} | "
                  f"{r['item_table_mb']:.0f} | {r['unchunked_scores_mb']:.0f} | {r['seconds']:.1f} |"
                  for r in doc["runs"]]
    return "\n".join(lines) + "\n"


def _added(row: dict) -> int:
    """How many synthetic sequences a row trained on (all iterations' for ``rsir2`` and later)."""
    return row["data"]["synthetic_sequences"]


def rsir_table() -> str:
    """Base against RSIR and the augmentation baselines; the paired test pools users over seeds."""
    rows = records.load("rsir/*.json")
    if not rows:
        return "_no RSIR results yet_\n"
    groups: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[(r["dataset"], r["model"], r["setting"])][records.variant(r)].append(r)
    lines = ["| dataset | model | setting | method | seeds | synthetic seqs | valid N@20 | test R@10 | test N@10 | "
             "ΔR@10 vs base | p (t-test, R@10) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, model, setting), variants in sorted(groups.items()):
        for variant, rs in sorted(variants.items(), key=lambda kv: (kv[0] != "base", kv[0])):
            recall = np.mean([r["test"]["recall@10"] for r in rs])
            tag, is_base = rs[0].get("tag", ""), rs[0]["method"] == "base"
            # a run whose base trained otherwise (e.g. -warm-fast) is held against its own base row
            own = variants.get(f"base{tag}") if not is_base else None
            base = {r["seed"]: r for r in own or variants.get("base", [])}
            paired = [r for r in rs if r["seed"] in base]
            gain, p_value = "–", "–"
            if variant != "base" and paired:
                try:
                    test = records.paired([base[r["seed"]] for r in paired], paired)
                    gain, p_value = f"{100 * test['relative']:+.1f} %", f"{test['p_ttest']:.3f}"
                except FileNotFoundError:
                    if not is_base:  # a base trained otherwise may lack the plain base's ranks; a method may not
                        raise
            added = f"{np.mean([_added(r) for r in rs]):.0f}"  # the seeds' mean, as in the versus table
            lines.append(f"| {dataset} | {model} | {setting} | {variant} | {len(rs)} | {added} | "
                         f"{np.mean([r['valid']['ndcg@20'] for r in rs]):.4f} | {recall:.4f} | "
                         f"{np.mean([r['test']['ndcg@10'] for r in rs]):.4f} | {gain} | {p_value} |")
    return "\n".join(lines) + "\n"


# generation knobs in a tag: they change what RSIR adds, not how any model trains (tft: the teacher is
# the fine-tuned base, --finetuned-teacher)
_GENERATION_KNOBS = re.compile(r"-(tau[\d.]+|k\d+|prefix-random|p[\d.]+|tft|teacher-\w+|(no-)?fidelity-m\d+)")


def _baselines(tag: str, setting: str) -> list[str]:
    """The baselines an RSIR variant is held against: those trained the same way (its tag less the
    generation knobs, in the strong setting where the bar is measured; the paper setting's sweeps have
    their own plots), at the count it matched and at twice that (``--baseline-scale 2``, ``-x2`` right
    after the weight: ``insertion-w0.5-x2-lr0.3-ft``), the nearer match for variants that add more
    (τ = 50, two iterations, ``rsir+insertion``)."""
    if setting == "strong":
        tag = _GENERATION_KNOBS.sub("", tag)
    return [f"{method}{t}" for t in (tag, records.scaled_tag(tag, 2)) for method in ("reorder", "insertion")]


def versus_table() -> str:
    """Each RSIR variant against the augmentation baselines trained the same way, paired over the
    seeds both have: does the generation itself beat adding sequences? The counts say how fair the
    match is (a larger τ adds more than the baselines were given)."""
    groups: dict[tuple, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in records.load("rsir/*.json"):
        groups[(r["dataset"], r["model"], r["setting"])][records.variant(r)][r["seed"]] = r
    lines = ["| dataset | model | RSIR variant | baseline | seeds | synthetic seqs (RSIR / baseline) | RSIR R@10 | "
             "baseline R@10 | ΔR@10 | p (t-test) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, model, setting), variants in sorted(groups.items()):
        for variant, by_seed in sorted(variants.items()):
            if not variant.startswith("rsir"):
                continue
            tag = next(iter(by_seed.values())).get("tag", "")
            for baseline in _baselines(tag, setting):
                seeds = sorted(set(by_seed) & set(variants.get(baseline, {})))
                if not seeds:
                    continue
                ours, theirs = [by_seed[s] for s in seeds], [variants[baseline][s] for s in seeds]
                test = records.paired(theirs, ours)
                added = " / ".join(f"{np.mean([_added(r) for r in rows]):,.0f}" for rows in (ours, theirs))
                lines.append(f"| {dataset} | {model} | {variant} | {baseline} | {len(seeds)} | {added} | "
                             f"{np.mean([r['test']['recall@10'] for r in ours]):.4f} | "
                             f"{np.mean([r['test']['recall@10'] for r in theirs]):.4f} | "
                             f"{100 * test['relative']:+.1f} % | {test['p_ttest']:.3f} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else "_no RSIR and baseline rows trained the same way yet_\n"


def data_table() -> str:
    """Density and Approximate Entropy of each training set (paper Fig. 5), mean over seeds."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records.load("rsir/*.json"):
        groups[(r["dataset"], r["model"], r["setting"], records.variant(r))].append(r["data"])
    if not groups:
        return "_no RSIR results yet_\n"
    lines = ["| dataset | model | setting | training set | seeds | sequences | interactions | density | ApEn "
             "| 1/ApEn |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    order = sorted(groups, key=lambda key: (key[:3], key[3] != "base", key[3]))
    for dataset, model, setting, variant in order:
        ds = groups[(dataset, model, setting, variant)]
        mean = {key: np.mean([d[key] for d in ds]) for key in
                ("users", "synthetic_sequences", "interactions", "density", "apen", "apen_reciprocal")}
        lines.append(f"| {dataset} | {model} | {setting} | {variant} | {len(ds)} | "
                     f"{mean['users'] + mean['synthetic_sequences']:.0f} | {mean['interactions']:.0f} | "
                     f"{mean['density']:.6f} | {mean['apen']:.4f} | {mean['apen_reciprocal']:.3f} |")
    return "\n".join(lines) + "\n"


def services_table() -> str:
    lines = []
    for r in records.load("streaming-overhead-*.json"):
        med = r["median_seconds"]
        lines.append(f"- Streaming through the generator service on {r['data']} ({r['sequences']} sequences): "
                     f"{med['service']:.2f} s against {med['in_process']:.2f} s in-process, overhead "
                     f"{100 * r['overhead']:+.1f} % (same output: {r['same_output']}).")
    for r in records.load("status-latency.json"):
        o, cores = r["overall"], len(r["setup"].get("cpu_affinity", [])) or r["machine"]["cores"]
        lines.append(f"- Orchestrator status endpoints at {o['achieved_rps']:.0f} requests/s on {r['machine']['cpu']} "
                     f"({r['date']}, server, Redis and load generator on {cores} core(s)): p50 {o['p50_ms']:.1f} ms, "
                     f"p99 {o['p99_ms']:.1f} ms, {o['errors']} errors ({o['requests']} requests); "
                     f"{r['orchestrator_cpu_ms_per_request']:.2f} ms of server CPU per request.")
    return "\n".join(lines) + "\n" if lines else "_no service results yet_\n"


def main() -> None:
    backbones, rsir, versus = accuracy_table(), rsir_table(), versus_table()
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(
        "# Results\n\nProduced by `python bench/summarize.py` from `bench/results/*.json`; rerun the scripts in "
        "`bench/` to reproduce. Test metrics are full-ranking leave-one-out with the user's history masked, at the "
        "epoch chosen on validation NDCG@20.\n\n## Backbones (bench/accuracy.py)\n\n" + backbones
        + "\n### Validation sweeps (bench/tune.py)\n\nThe point in bold has the best validation NDCG@20; test "
        + "columns show what that choice did and were not used to make it. The bench's choices (`accuracy.CHOSEN`) "
        + "keep a backbone's defining term: CL4SRec takes the best point with a contrastive weight above 0 "
        + "(0.01), since λ = 0 is SASRec.\n\n" + tune.table()
        + "\n## RSIR against the baselines (bench/rsir_table.py)\n\n"
        + "One RSIR iteration (τ = 20, p = 0.5, m = 5, greedy, first-item prefix unless a tag says otherwise) "
        + "against Reordering and Insertion with the same number of added sequences (`synthetic seqs` is the mean "
        + "over seeds and counts all iterations' for `rsir2` and later). `-wX` weighs the synthetic sequences' loss "
        + "by X, `-ft` adds the real-data stage (`-lrX-ft` at X times the learning rate), `-x2` baselines add twice "
        + "the sequences, the other tags are generation variants (`-tau50`, `-k3`, `-prefix-random`; `-tft`: the "
        + "fine-tuned base teaches; `-warm`: the beauty recipe, RSIR + Insertion at weight 0.5 with the real-data "
        + "stage, its student starting from the base's weights; `-warm-fast` also with patience 5 and `min_delta` "
        + "0.005 for both; each held against its own `base-warm...` row; `-fig4`, `-fig4-teacher-X`: the runs of "
        + "the teacher × student study below; `-gru-packed`: GRU4Rec's packed recurrence, to compare with the GRU's "
        + "`base-fig4`). ΔR@10 and "
        + "the paired t-test pool the users of every seed present for both rows.\n\n" + rsir
        + "\nHead to head with the baselines trained the same way (the same loss weight and stages: a tag less its "
        + "generation knobs such as `-tau50` or `-k3`; generation "
        + "knobs such as τ change only what RSIR adds, so the synthetic counts say how even the match is; `-x2` "
        + "baselines add twice the sequences of one RSIR iteration), "
        + "paired over shared seeds:\n\n" + versus
        + "\n## Training sets: density and Approximate Entropy (paper Fig. 5; bench/rsir_table.py)\n\n"
        + "Density counts real users only (synthetic sequences add interactions, not users), as the paper does. "
        + "ApEn uses m = 2 and r = 0 (Appendix E); no sequence here repeats an item (the real users of these sets "
        + "never do, and generation masks what it has emitted), so with r = 0 a sequence's ApEn depends on its "
        + "length N alone, log((N − 2)/(N − 1)) < 0: shorter sequences give a more negative ApEn and a larger "
        + "1/ApEn, whatever their items. The paper's reading of ApEn as information content does not carry over."
        + "\n\n" + data_table()
        + "\n## Sweeps of τ and p (paper Tables 7 and 8, Fig. 3; bench/rsir_table.py --tau / --p)\n\n"
        + studies.sweeps()
        + "\n## Recursion over iterations (paper Table 6, Fig. 6; bench/rsir_table.py --iterations)\n\n"
        + studies.recursion()
        + "\n## The fidelity check on and off (paper Table 2; bench/rsir_table.py --tau inf --tag no-fidelity)\n\n"
        + "Each iteration of a run with every generated step kept (τ = ∞, `w/o`) against the same recipe with the "
        + "fidelity check (`w`); k = 0 is the shared base. Paired over the seeds both ran "
        + "(`fidelity-<dataset>-<model>-<setting>.png`).\n\n" + studies.fidelity_ablation()
        + "\n## Teacher × student (paper Fig. 4; bench/rsir_table.py --teacher)\n\n" + studies.teacher_student()
        + "\n## Where the gains come from (bench/gains_by_group.py)\n\n"
        + "Users split by the items before their test target, by how often the target occurs in the "
        + "training view, and by whether the target is the item that most often follows their last item there "
        + "(the item Insertion would insert after it); each variant is paired against the base on the same "
        + "users.\n\n" + studies.user_groups()
        + "\n## Speed (bench/eval_speed.py, bench/generation_speed.py)\n\n" + generation_table()
        + "\n## Services (bench/streaming_overhead.py, bench/status_latency.py)\n\n" + services_table()
        + "\n## Reproducing a row\n\n"
        + "Each row of the RSIR tables is one file, `bench/results/rsir/<row>.json`, for example "
        + "`toys-sasrec-strong-seed0-rsir1-w0.5-ft.json`. The per-user test ranks that the paired tests need are "
        + "not in git: `bench/rsir_table.py` runs the row's recipe and flags through the product's loop and writes "
        + "them to `bench/results/rsir/ranks/<row>.npy` with the base's as `<stem>-base<tag>` (that row: "
        + "`python bench/rsir_table.py --datasets toys --seeds 0 --recipe default --tag w0.5-ft`). A rerun matches "
        + "the recorded row where the CPU "
        + "reproduces the training. Without the ranks, `python bench/summarize.py` takes each p-value from "
        + "`bench/results/paired-tests.json`, which it rewrites whenever the ranks are present.\n")
    records.save_paired_tests()


if __name__ == "__main__":
    main()
