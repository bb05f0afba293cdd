"""``python -m services.orchestrator``: serve the run API and dashboard until SIGTERM.

uvicorn handles SIGTERM/SIGINT: it stops accepting requests, then the lifespan stops the driver;
a run in flight is left at its stage in Redis and resumed by the next start.
"""

from __future__ import annotations

import uvicorn

from services.common.logs import configure_logging
from services.orchestrator.app import create_app
from services.orchestrator.discovery import DiscoveryError, expand_addresses
from services.orchestrator.settings import OrchestratorSettings


def main() -> None:
    settings = OrchestratorSettings()
    configure_logging(settings.log_level)
    try:  # dns:///NAME:PORT entries stand for every generator replica behind NAME
        settings.generator_addrs = expand_addresses(settings.generator_addrs)
    except DiscoveryError as exc:
        raise SystemExit(f"orchestrator: {exc}") from None
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                access_log=False, timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
