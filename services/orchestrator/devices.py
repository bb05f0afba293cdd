"""Refusing, at ``POST /runs``, a run whose training asks for a device the trainer does not have.

The trainer would refuse each such job with INVALID_ARGUMENT anyway, but only once the run reaches
it; asking the trainer (``rsir.api.v1.Info``) first turns that into a 422 naming the field and the
devices there are. A trainer that does not answer is no reason to refuse: the run waits for it
like any other.
"""

from __future__ import annotations

import logging

import grpc

from services.orchestrator.deps import field_error
from services.orchestrator.schemas import RunSpec
from services.trainer.client import TrainerClient

logger = logging.getLogger(__name__)
ASK_TIMEOUT_S = 2.0


def check_devices(spec: RunSpec, trainer: TrainerClient) -> None:
    """422 when the run's (or its teacher's) ``train.device`` is not among the trainer's devices."""
    config = spec.resolve()[1]
    wanted: dict[tuple[str, ...], str] = {("body", "train", "device"): config.train.device}
    if config.teacher is not None and config.teacher.train is not None:
        wanted[("body", "teacher", "train", "device")] = config.teacher.train.device
    wanted = {loc: name for loc, name in wanted.items() if name != "auto"}
    if not wanted:
        return
    try:
        devices = list(trainer.describe(ASK_TIMEOUT_S).devices)
    except grpc.RpcError as exc:
        logger.info("trainer at %s did not describe its devices (%s); run accepted unchecked", trainer.address,
                    exc.code().name)
        return
    for loc, name in wanted.items():
        if (f"{name}:0" if name == "cuda" else name) not in devices:
            raise field_error(422, list(loc), f"the trainer has no device {name!r}; it has {', '.join(devices)}")
