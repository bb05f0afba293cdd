"""``python -m services.trainer``: run the trainer service until SIGTERM."""

from __future__ import annotations

from rsir.distributed import check_devices
from rsir.resources import resolve_device
from services.common.calls import MemoryBudget
from services.common.grpc_server import serve
from services.common.logs import configure_logging
from services.trainer.servicer import TrainerServicer
from services.trainer.settings import TrainerSettings


def main() -> None:
    settings = TrainerSettings()
    configure_logging(settings.log_level)
    resolve_device(settings.device)  # TRAINER_DEVICE names a device this machine has, or the trainer exits
    check_devices(settings.device, settings.nproc)  # and TRAINER_NPROC one GPU per process on CUDA
    if settings.node_rank != 0:
        raise SystemExit(f"TRAINER_NODE_RANK={settings.node_rank}: the service is node 0; "
                         "the other nodes run python -m services.trainer.peer")
    servicer = TrainerServicer(settings.store(), default_device=settings.device,
                               max_concurrent_calls=settings.max_concurrent_calls,
                               memory=MemoryBudget(settings.memory_budget_bytes(), settings.memory_budget_name()),
                               threads=settings.threads(), max_items=settings.max_items, nproc=settings.nproc,
                               rendezvous=settings.rendezvous())
    serve(servicer.definition(), host=settings.host, port=settings.port,
          max_concurrent_calls=settings.max_concurrent_calls, max_message_mb=settings.max_message_mb,
          token=settings.token_value(), grace=settings.grace_seconds)


if __name__ == "__main__":
    main()
