"""``/healthz`` (the process and its driver are alive), ``/readyz`` (every dependency really answers)
and ``/metrics`` (Prometheus)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import APIRouter, Request, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.common.healthcheck import health_status
from services.orchestrator.deps import DriverDep, SettingsDep, StoreDep

router = APIRouter(tags=["health"])
TRAINER, GENERATOR = "rsir.api.v1.Trainer", "rsir.api.v1.Generator"


@router.get("/healthz")
async def healthz(driver: DriverDep, response: Response) -> dict[str, Any]:
    """Liveness: the process answers and its driver workers run."""
    alive = driver.alive()
    response.status_code = status.HTTP_200_OK if alive else status.HTTP_503_SERVICE_UNAVAILABLE
    return {"status": "ok" if alive else "driver stopped"}


def _probe(check: Any) -> str:
    try:
        result = check()
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"
    return "ok" if result is None or result is True else str(result)


@router.get("/readyz")
def readyz(store: StoreDep, settings: SettingsDep, response: Response) -> dict[str, Any]:
    """Readiness: Redis answers PING, the object store is usable, the trainer and at least one
    generator report SERVING on the gRPC health service (each generator is listed)."""
    timeout = settings.health_timeout_s
    checks = {"redis": store.redis.ping, "storage": store.objects.check,
              "trainer": lambda: _serving(settings.trainer_addr, TRAINER, timeout)}
    checks |= {f"generator {a}": (lambda a=a: _serving(a, GENERATOR, timeout)) for a in settings.generator_addrs}
    with ThreadPoolExecutor(len(checks)) as pool:
        results = dict(zip(checks, pool.map(_probe, checks.values()), strict=True))
    generators = [v for k, v in results.items() if k.startswith("generator")]
    ready = all(results[k] == "ok" for k in ("redis", "storage", "trainer")) and "ok" in generators
    response.status_code = status.HTTP_200_OK if ready else status.HTTP_503_SERVICE_UNAVAILABLE
    return {"ready": ready, "checks": results}


def _serving(address: str, service: str, timeout: float) -> str | None:
    state = health_status(address, service, timeout=timeout)
    return None if state == "SERVING" else state


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
