"""The dashboard: server-rendered pages (Jinja2) whose small inline script draws the charts and
follows the run's event stream. No external assets: the page works without network access."""

from __future__ import annotations

import pathlib
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.responses import HTMLResponse

from rsir.recipes import recipe_names, recipe_summary
from rsir.sources import BENCHMARKS, SYNTHETIC
from rsir.sources import data_dir as data_dir_of
from services.orchestrator.deps import SettingsDep, StoreDep
from services.orchestrator.schemas import RUN_ID
from services.orchestrator.store import Store

router = APIRouter(tags=["dashboard"], include_in_schema=False)


def datasets_to_run(store: Store, data_dir: pathlib.Path | None) -> list[tuple[str, str]]:
    """(value, label) of what a run may start from: the benchmarks found here, the built-in synthetic
    data, and the uploaded dataset versions (not the generated ones: a run makes those)."""
    root = data_dir_of(data_dir)
    found = [(name, name) for name, b in BENCHMARKS.items() if root is not None and (root / b.file).is_file()]
    uploaded = [(d["version"], f"{d['name']} ({d['version'][:12]})") for d in store.versions.list(100)
                if d.get("parent") is None and d.get("source") not in BENCHMARKS and d.get("source") != SYNTHETIC]
    return [*found, (SYNTHETIC, SYNTHETIC), *uploaded]


@router.get("/", response_class=HTMLResponse)
def index(request: Request, store: StoreDep, settings: SettingsDep) -> HTMLResponse:
    recipes = [{"name": name, "summary": recipe_summary(name)} for name in recipe_names()]
    return request.app.state.templates.TemplateResponse(
        request, "index.html", {"runs": store.runs.list(200), "datasets": store.versions.list(50), "recipes": recipes,
                                "datasets_to_run": datasets_to_run(store, settings.data_dir)})


@router.get("/ui/runs/{run_id}", response_class=HTMLResponse)
def run_page(run_id: Annotated[str, Path(pattern=RUN_ID)], request: Request, store: StoreDep) -> HTMLResponse:
    run = store.runs.get(run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id}")
    run["progress"] = store.runs.get_progress(run_id) if run["status"] == "running" else None
    lineage = [store.versions.get(v) for v in run["datasets"]]
    return request.app.state.templates.TemplateResponse(request, "run.html", {"run": run, "lineage": lineage})
