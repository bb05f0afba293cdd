"""A validation sweep of one backbone's settings → bench/results/tune/*.json.

Each point overrides fields of the setting's ``ModelConfig`` or ``TrainConfig`` (``accuracy.py``'s
``SETTINGS``, before any per-backbone choice) and trains once. The point to keep is the one with the
best validation NDCG@20, never the best test; test metrics are saved so that a reader can see what
the choice did.

Usage: ``python bench/tune.py --dataset toys --model cl4srec --setting paper
--points cl_weight=0.1 cl_weight=0 cl_weight=0.02,cl_temperature=0.5`` (needs ``RSIR_DATA_DIR``
or ``--data-dir``). A point's fields are comma-separated ``field=value`` pairs.
"""

from __future__ import annotations

import argparse
from dataclasses import fields

import records
from accuracy import SETTINGS, configs, fit  # bench/ is on sys.path when a script here runs

from rsir import jsonio
from rsir.config import ModelConfig, TrainConfig
from rsir.datasets import SequenceDataset
from rsir.errors import ConfigError
from rsir.sources import load_dataset

RESULTS = records.RESULTS / "tune"
FIELDS = {f.name: f.type for f in fields(ModelConfig) + fields(TrainConfig)}


def parse_point(text: str) -> dict[str, object]:
    """``"cl_weight=0.02,loss=ce"`` → ``{"cl_weight": 0.02, "loss": "ce"}``, typed as the field is."""
    point: dict[str, object] = {}
    for pair in text.split(","):
        name, sep, value = pair.partition("=")
        kind = FIELDS.get(name) if name not in ("name", "seed") else None  # given by --model, --seed
        if not sep or kind not in ("int", "float", "str"):
            raise SystemExit(f"bad point {text!r}: expected field=value with a number or text field of "
                             "ModelConfig or TrainConfig")
        try:
            point[name] = {"int": int, "float": float, "str": str}[kind](value)
        except ValueError:
            raise SystemExit(f"bad point {text!r}: {name} needs an {kind}, got {value!r}") from None
    return point


def point_tag(point: dict[str, object], eq: str = "", sep: str = "-") -> str:
    """``{"cl_weight": 0.02}`` → ``cl_weight0.02`` for file names, ``cl_weight = 0.02`` for tables."""
    return sep.join(f"{k}{eq}{v:g}" if isinstance(v, float) else f"{k}{eq}{v}" for k, v in sorted(point.items()))


def run_point(dataset: SequenceDataset, dataset_name: str, model_name: str, setting: str, seed: int,
              point: dict[str, object]) -> dict:
    """Train the setting's configs with ``point`` in place of the backbone's validated choices."""
    try:
        model_config, train_config = configs(setting, model_name, seed, point)
    except ConfigError as exc:
        raise SystemExit(f"bad point {point}: {exc}") from None
    row = fit(dataset, model_config, train_config)[1]
    return {"dataset": dataset_name, "model": model_name, "setting": setting, "seed": seed, "point": point, **row}


def table() -> str:
    """Markdown: every sweep's points, the one with the best validation NDCG@20 in bold."""
    groups: dict[tuple, list[dict]] = {}
    for row in records.load("tune/*.json"):
        groups.setdefault((row["dataset"], row["model"], row["setting"], row["seed"]), []).append(row)
    if not groups:
        return "_no sweeps yet_\n"
    lines = ["| dataset | model | setting | seed | point | valid NDCG@20 | valid R@10 | test R@10 | test N@10 | "
             "epochs (best) | s/epoch |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (dataset, model, setting, seed), rows in sorted(groups.items()):
        best = max(r["valid"]["ndcg@20"] for r in rows)
        for r in sorted(rows, key=lambda r: -r["valid"]["ndcg@20"]):
            mark = "**" if r["valid"]["ndcg@20"] == best else ""
            lines.append(
                f"| {dataset} | {model} | {setting} | {seed} | {mark}{point_tag(r['point'], ' = ', ', ')}{mark} | "
                f"{r['valid']['ndcg@20']:.4f} | {r['valid']['recall@10']:.4f} | {r['test']['recall@10']:.4f} | "
                f"{r['test']['ndcg@10']:.4f} | {r['epochs']} ({r['best_epoch']}) | {r['seconds_per_epoch']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--setting", default="paper", choices=list(SETTINGS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--points", nargs="+", required=True, type=parse_point)
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    dataset = load_dataset(args.dataset, args.data_dir)
    for point in args.points:
        row = run_point(dataset, args.dataset, args.model, args.setting, args.seed, point)
        name = f"{args.dataset}-{args.model}-{args.setting}-seed{args.seed}-{point_tag(point)}.json"
        jsonio.write((RESULTS / name), row)
        print(f"{point_tag(point):40} valid ndcg@20 {row['valid']['ndcg@20']:.4f} "
              f"(test recall@10 {row['test']['recall@10']:.4f}; {row['epochs']} epochs, "
              f"{row['train_seconds'] / 60:.1f} min)", flush=True)


if __name__ == "__main__":
    main()
