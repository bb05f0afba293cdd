"""Trainer settings, from ``TRAINER_*`` environment variables (e.g. ``TRAINER_PORT``, ``TRAINER_STORAGE_URL``,
``TRAINER_S3_ENDPOINT``, ``TRAINER_S3_ACCESS_KEY``, ``TRAINER_S3_SECRET_KEY``, ``TRAINER_TOKEN``, ``TRAINER_NPROC``;
across nodes ``TRAINER_NNODES``, ``TRAINER_NODE_RANK``, ``TRAINER_RDZV_HOST``, ``TRAINER_RDZV_PORT``,
``TRAINER_RDZV_TIMEOUT_S``). The service is node 0; ``python -m services.trainer.peer`` reads the same
settings on the other nodes."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings
from services.trainer.rendezvous import Rendezvous


class TrainerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRAINER_", extra="ignore")

    port: int = Field(default=50051, ge=0, le=65535)
    max_concurrent_calls: int = Field(default=1, ge=1, le=64)  # trainings at once; more get RESOURCE_EXHAUSTED
    # processes per training on each node (data parallel under torchrun, one GPU each on CUDA); 1: in this process
    nproc: int = Field(default=1, ge=1, le=64)
    # nodes per training: above 1, node 0 is the service and nodes 1.. run services.trainer.peer
    nnodes: int = Field(default=1, ge=1, le=1024)
    node_rank: int = Field(default=0, ge=0)  # this node's place; 0 is the service, peers 1..nnodes-1
    # where every node reaches node 0 for a job's rendezvous (torchrun's static TCPStore); needed with nnodes > 1
    rdzv_host: str | None = Field(default=None, pattern=r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,252})$")
    rdzv_port: int = Field(default=29400, ge=1, le=65535)
    # seconds node 0 waits for every peer to join a job (then the call fails FAILED_PRECONDITION), and a peer for a job
    rdzv_timeout_s: int = Field(default=120, ge=5, le=3600)

    @model_validator(mode="after")
    def _nodes(self) -> TrainerSettings:
        if self.node_rank >= self.nnodes:
            raise ValueError(f"TRAINER_NODE_RANK={self.node_rank} must be below TRAINER_NNODES={self.nnodes}")
        if self.nnodes > 1 and self.rdzv_host is None:
            raise ValueError("TRAINER_NNODES > 1 needs TRAINER_RDZV_HOST: the address the nodes reach node 0 at")
        if self.nnodes > 1 and self.max_concurrent_calls > 1:  # one rendezvous port, one job per peer
            raise ValueError("TRAINER_NNODES > 1 runs one job at a time: TRAINER_MAX_CONCURRENT_CALLS must be 1")
        return self

    def rendezvous(self) -> Rendezvous | None:
        """Where this node's jobs meet the others; None on one node."""
        if self.nnodes == 1:
            return None
        assert self.rdzv_host is not None
        return Rendezvous(self.nnodes, self.rdzv_host, self.rdzv_port, self.rdzv_timeout_s)
