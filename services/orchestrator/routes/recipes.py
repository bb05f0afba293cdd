"""``GET /recipes``: the named recipes a run may start from (``rsir.recipes``), with their settings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from rsir.jsonio import jsonable
from rsir.recipes import RunConfig, load_recipe, recipe_names, recipe_summary

router = APIRouter(prefix="/recipes", tags=["recipes"])


@router.get("")
def list_recipes() -> list[dict[str, Any]]:
    """Every recipe: its name, the first line of its file's comment, and the settings it resolves to."""
    return [{"name": name, "summary": recipe_summary(name),
             "config": jsonable(RunConfig.from_dict(load_recipe(name)).to_dict())} for name in recipe_names()]
