"""The dashboard: server-rendered pages (Jinja2) whose small inline script draws the charts and
follows the run's event stream. No external assets: the page works without network access."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Request, status
from fastapi.responses import HTMLResponse

from services.orchestrator.deps import StoreDep
from services.orchestrator.schemas import RUN_ID

router = APIRouter(tags=["dashboard"], include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def index(request: Request, store: StoreDep) -> HTMLResponse:
    return request.app.state.templates.TemplateResponse(
        request, "index.html", {"runs": store.list_runs(200), "datasets": store.list_datasets(50)})


@router.get("/ui/runs/{run_id}", response_class=HTMLResponse)
def run_page(run_id: Annotated[str, Path(pattern=RUN_ID)], request: Request, store: StoreDep) -> HTMLResponse:
    run = store.get_run(run_id)
    if run is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no run {run_id}")
    run["progress"] = store.get_progress(run_id) if run["status"] == "running" else None
    lineage = [store.get_dataset(v) for v in run["datasets"]]
    return request.app.state.templates.TemplateResponse(request, "run.html", {"run": run, "lineage": lineage})
