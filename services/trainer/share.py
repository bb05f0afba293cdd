"""A multi-node job's files, from node 0 to the ranks of the other nodes, over torch.distributed.

Only node 0 (the trainer service) holds the job's directory; the peers start their workers with an
empty one. The job spec must reach them before the process group forms (its device chooses gloo
or nccl), so rank 0 puts ``job.json`` in the TCPStore torchrun's agents met on; the data and the
checkpoint to continue follow as byte tensors once the group is up, and each peer node's local rank 0
writes them to its directory. On one node every rank reads the directory itself, as before.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from rsir.distributed import World

JOB_KEY = "rsir/job.json"
STARTED = "started"  # rank 0 marks node 0's directory: torchrun started the workers, so every node joined
FILES = ("data.npz", "init.pt")
STORE_TIMEOUT = timedelta(minutes=5)  # rank 0 puts the spec there first thing: this only bounds a dead node 0


def _env(name: str) -> int:
    return int(os.environ[name])


def spans_nodes() -> bool:
    """Whether this torchrun job has ranks on other nodes."""
    return _env("WORLD_SIZE") > _env("LOCAL_WORLD_SIZE")


def _writes_files() -> bool:
    """One process per peer node writes the job into its directory."""
    return _env("GROUP_RANK") > 0 and _env("LOCAL_RANK") == 0


def job_spec(directory: Path) -> dict:
    """The job's ``job.json``: read here on node 0, from the rendezvous store on a peer node."""
    if not spans_nodes() or _env("GROUP_RANK") == 0:
        text = (directory / "job.json").read_text()
        if spans_nodes() and _env("RANK") == 0:
            (directory / STARTED).touch()
            _store().set(JOB_KEY, text)
        return json.loads(text)
    text = _store().get(JOB_KEY).decode()
    if _writes_files():
        (directory / "job.json").write_text(text)
    return json.loads(text)


def _store() -> dist.TCPStore:
    return dist.TCPStore(os.environ["MASTER_ADDR"], _env("MASTER_PORT"), is_master=False, timeout=STORE_TIMEOUT)


def receive_files(directory: Path, world: World) -> None:
    """Rank 0 broadcasts the job's files as raw bytes (nothing is unpickled); each peer node writes
    them before any of its ranks reads."""
    if not spans_nodes():
        return
    for name in FILES:
        path = directory / name
        data = path.read_bytes() if world.is_main and path.exists() else b""
        size = torch.tensor([len(data)], dtype=torch.int64, device=world.device)
        dist.broadcast(size, src=0)
        if (length := int(size.item())) == 0:  # no checkpoint to continue
            continue
        buffer = (torch.frombuffer(bytearray(data), dtype=torch.uint8).to(world.device) if world.is_main
                  else torch.empty(length, dtype=torch.uint8, device=world.device))
        dist.broadcast(buffer, src=0)
        if _writes_files():
            path.write_bytes(buffer.cpu().numpy().tobytes())
    dist.barrier()
