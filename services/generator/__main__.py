"""``python -m services.generator``: run the generator service until SIGTERM."""

from __future__ import annotations

from rsir.resources import resolve_device
from services.common.calls import MemoryBudget
from services.common.grpc_server import serve
from services.common.logs import configure_logging
from services.generator.servicer import GeneratorServicer
from services.generator.settings import GeneratorSettings


def main() -> None:
    settings = GeneratorSettings()
    configure_logging(settings.log_level)
    servicer = GeneratorServicer(settings.store(), device=resolve_device(settings.device),
                                 checkpoint_cache_size=settings.checkpoint_cache_size,
                                 dataset_cache_size=settings.dataset_cache_size,
                                 max_concurrent_calls=settings.max_concurrent_calls,
                                 max_items_per_message=settings.max_items_per_message, preload=settings.preload,
                                 memory=MemoryBudget(settings.memory_budget_bytes(), settings.memory_budget_name()),
                                 threads=settings.threads(), max_items=settings.max_items)
    serve(servicer.definition(), host=settings.host, port=settings.port,
          max_concurrent_calls=settings.max_concurrent_calls, max_message_mb=settings.max_message_mb,
          token=settings.token_value(), grace=settings.grace_seconds)


if __name__ == "__main__":
    main()
