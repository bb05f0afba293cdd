"""Every committed benchmark record is strict JSON: other tools (jq, browsers, most JSON libraries)
refuse Python's bare ``Infinity`` and ``NaN``; τ = ∞ is written ``"inf"`` (``rsir.jsonio``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsir import jsonio

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"
FILES = sorted(RESULTS.rglob("*.json"))


def test_there_are_results_to_check() -> None:
    assert FILES, f"no JSON under {RESULTS}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(RESULTS)))
def test_result_is_strict_json(path: Path) -> None:
    jsonio.loads(path.read_text())


@pytest.mark.parametrize("text", ['{"tau": Infinity}', '{"tau": -Infinity}', '{"p": NaN}'])
def test_the_check_refuses_bare_constants(text: str) -> None:
    with pytest.raises(ValueError, match="not strict JSON"):
        jsonio.loads(text)
