"""Command-line flags generated from the config dataclasses, and frozen experiment config files.

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
