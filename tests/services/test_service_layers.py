"""Dependency direction: rsir ← services.common ← services.{trainer,generator}, no sideways imports."""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services"
FORBIDDEN = {
    "common": ("services.trainer", "services.generator"),
    "trainer": ("services.generator",),
    "generator": ("services.trainer",),
}


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_layers():
    for package, forbidden in FORBIDDEN.items():
        for path in (SERVICES / package).rglob("*.py"):
            bad = sorted(name for name in imports(path) if name.startswith(forbidden))
            assert not bad, f"{path.relative_to(SERVICES)} imports {bad}"
