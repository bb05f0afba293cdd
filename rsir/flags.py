"""Command-line flags generated from the config dataclasses, the run flags that go over a recipe, and
frozen experiment config files.

A flag per dataclass field (``--dim``, ``--epochs``, ``--tau`` ...), typed, with its choices and
help from the field's setting (``rsir.config.schema``), lands in the namespace as ``<Class>.<field>``,
so ``config_from_args`` rebuilds the dataclass and a new field needs no CLI edit.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from rsir.config import GenerationConfig, ModelConfig, TrainConfig, from_dict, schema
from rsir.errors import RsirError
from rsir.recipes import RunConfig, TeacherConfig, resolve

_RENAMED = {
    ModelConfig: {"name": "model"},
    TrainConfig: {"max_epochs": "epochs"},
    GenerationConfig: {"max_len": "gen_max_len", "seed": "gen_seed", "batch_rows": "gen_batch_rows"},
}


def add_config_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """A flag per field of config dataclass ``cls``, with the type, choices and help of its setting."""
    group = parser.add_argument_group(cls.__name__)
    for s in schema(cls):
        key = _RENAMED.get(cls, {}).get(s.name, s.name)
        flag = "--" + key.replace("_", "-")
        text = "; ".join(t for t in (s.help.replace("%", "%%"), s.range_text()) if t) + " (default: %(default)s)"
        if s.kind is bool:
            group.add_argument(flag, dest=f"{cls.__name__}.{s.name}", action=argparse.BooleanOptionalAction,
                               default=s.default, help=text)
        else:
            group.add_argument(flag, dest=f"{cls.__name__}.{s.name}", type=s.kind, default=s.default,
                               choices=s.choices, metavar=None if s.choices else key.upper(), help=text)


def config_from_args(args: argparse.Namespace, cls: type) -> Any:
    """Config ``cls`` from the parsed flags (config-file defaults included, so "inf" reads as a float)."""
    prefix = cls.__name__ + "."
    return from_dict(cls, {k[len(prefix):]: v for k, v in vars(args).items() if k.startswith(prefix)})


def add_run_flags(p: argparse.ArgumentParser) -> None:
    """The flags of a recipe run (``rsir run``, ``bench/rsir_table.py``): any of them given overrides the recipe."""
    p.add_argument("--recipe", help="a recipe name or a .toml file (default: the dataset's own recipe, else "
                                    "'default', the one that validated best across the benchmarks)")
    add_config_flags(p, ModelConfig)
    add_config_flags(p, TrainConfig)
    add_config_flags(p, GenerationConfig)
    p.add_argument("--iterations", type=int, help="K, iterations after the base model")
    p.add_argument("--early-stop", type=int, help="stop after this many iterations without a better validation "
                                                  "NDCG@20")
    p.add_argument("--significance", action=argparse.BooleanOptionalAction,
                   help="paired test of the selected iteration against iteration 0")
    p.add_argument("--warm-start", action=argparse.BooleanOptionalAction,
                   help="students after the base start from the previous student's weights")
    p.add_argument("--teacher", help="teacher backbone (default: the student teaches itself)")
    p.add_argument("--teacher-dim", type=int, help="teacher width (default: the student's)")
    p.add_argument("--teacher-layers", type=int, help="teacher depth (default: the student's)")
    p.add_argument("--teacher-checkpoint", type=Path, help="a fixed teacher model")
    p.add_argument("--teacher-real-stage", action=argparse.BooleanOptionalAction,
                   help="the student teaches after a real-data stage (TrainConfig.finetune_lr)")


def given_flags(argv: list[str]) -> argparse.Namespace:
    """The run flags typed in ``argv``, defaults left out: only those go over the recipe."""
    parser = argparse.ArgumentParser(add_help=False)
    add_run_flags(parser)
    for action in parser._actions:  # argparse has no public switch for "no defaults"
        action.default = argparse.SUPPRESS
    given, _ = parser.parse_known_args(argv)
    return given


def run_config_from_args(args: argparse.Namespace, given: argparse.Namespace, dataset: str,
                         **fixed: Any) -> tuple[str, RunConfig]:
    """The recipe ``args.recipe`` (else ``dataset``'s) with the ``given`` flags over it and ``fixed``
    settings (e.g. a bench's seed) over those: the recipe's name and the run's configuration."""
    typed = vars(given)
    overrides: dict[str, Any] = {}
    for cls, section in ((ModelConfig, "student"), (TrainConfig, "train"), (GenerationConfig, "generation")):
        prefix = cls.__name__ + "."
        values = {k[len(prefix):]: v for k, v in typed.items() if k.startswith(prefix)}
        if section == "train" and "seed" in values:
            overrides["seed"] = values.pop("seed")  # the run's one seed
        values.pop("seed", None)  # generation's seed is the run's
        if values:
            overrides[section] = values
    run_keys = ("iterations", "early_stop", "significance", "warm_start")
    overrides.update({key: typed[key] for key in run_keys if key in typed})
    if args.teacher_checkpoint:
        overrides["teacher"] = {"checkpoint": str(args.teacher_checkpoint)}
    elif args.teacher_real_stage is not None:
        overrides["teacher"] = {"real_stage": True} if args.teacher_real_stage else None
    recipe, config = resolve(args.recipe, dataset, {**overrides, **fixed})
    if args.teacher:  # a cheap teacher: the student's shape, another backbone, optionally smaller
        model = dataclasses.replace(config.student, name=args.teacher, dim=args.teacher_dim or config.student.dim,
                                    layers=args.teacher_layers or config.student.layers)
        config = dataclasses.replace(config, teacher=TeacherConfig(model=model))
    return recipe, config


_TABLES = {"model": ModelConfig, "train": TrainConfig, "generation": GenerationConfig}


def load_config_file(path: Path) -> dict[str, Any]:
    """Defaults from a frozen experiment config (``configs/*.toml``): tables ``[model]``,
    ``[train]``, ``[generation]`` hold config fields; top-level keys hold other flags (``data``,
    ``iterations``, ``teacher`` ...). Flags given on the command line still win."""
    import tomllib

    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RsirError(f"{path}: cannot read config ({exc})") from None
    defaults: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _TABLES and isinstance(value, dict):
            cls = _TABLES[key]
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(value) - known)
            if unknown:
                raise RsirError(f"{path}: unknown field(s) in [{key}]: {', '.join(unknown)}")
            defaults.update({f"{cls.__name__}.{k}": v for k, v in value.items()})
        else:
            defaults[key.replace("-", "_")] = value
    return defaults
