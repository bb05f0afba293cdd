"""Strict JSON for every record the project writes: files, Redis documents, API bodies, reports.

JSON has no infinities or NaN. One representation is used everywhere: ``inf`` and ``-inf`` become
the strings ``"inf"`` and ``"-inf"`` (τ = ∞ turns the fidelity check off, and a config must read
back as it was written), NaN becomes ``null`` (a missing value). ``rsir.config.from_dict`` reads the
strings back into floats.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

INF, NEG_INF = "inf", "-inf"


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats replaced as described above (numpy scalars become Python's)."""
    if hasattr(value, "item") and not isinstance(value, list | tuple | dict | str):
        value = value.item() if getattr(value, "ndim", 0) == 0 else value.tolist()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return INF if value > 0 else NEG_INF
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def dumps(value: Any, *, indent: int | None = None) -> str:
    """Strict JSON text of ``value`` (compact unless ``indent`` is given)."""
    separators = (",", ":") if indent is None else (",", ": ")
    return json.dumps(jsonable(value), indent=indent, separators=separators, allow_nan=False)


def write(path: str | Path, value: Any) -> None:
    """Write ``value`` as indented strict JSON with a final newline, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(value, indent=2) + "\n")


def loads(text: str | bytes) -> Any:
    """Parse strict JSON: bare ``Infinity``/``NaN`` are refused, as other tools would refuse them."""
    def refuse(name: str) -> Any:
        raise ValueError(f"not strict JSON: bare {name}")
    return json.loads(text, parse_constant=refuse)


def number(value: Any) -> Any:
    """A float field's value as read from JSON: ``"inf"``/``"-inf"`` (any case, also ``"Infinity"``)
    become floats; anything else is returned unchanged for the caller's own check."""
    if isinstance(value, str) and value.strip().lower().lstrip("+-") in ("inf", "infinity"):
        return -math.inf if value.strip().startswith("-") else math.inf
    return value
