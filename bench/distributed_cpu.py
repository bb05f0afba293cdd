"""Data-parallel training on this machine's CPU: N gloo processes against one, same global batch.

Usage: ``python bench/distributed_cpu.py --nproc 2 --epochs 3``. Trains SASRec (fp32, dropout 0, so
that both runs draw no random numbers the other does not) on the seeded synthetic data, once in this
process at ``--threads`` intra-op threads and once as ``--nproc`` processes of one thread each under
torch.distributed (gloo on loopback); records each epoch's loss, the largest loss difference, the
final weights' largest difference, and the wall seconds of each run (training and validation, from
``TrainResult.seconds``; process start-up not included) and the machine's load average at the end (a
shared machine's other work changes the times). Writes ``bench/results/distributed-cpu.json``;
docs/distributed.md reports it.
"""

from __future__ import annotations

import argparse
import os
import pickle
import socket
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.multiprocessing as mp

from rsir.config import ModelConfig, TrainConfig
from rsir.distributed import init_from_env, shutdown
from rsir.jsonio import write as write_json
from rsir.parallel import torch_threads
from rsir.resources import machine
from rsir.synthetic import synthetic_dataset
from rsir.training import TrainResult, train

MODEL = ModelConfig(dim=64, heads=2, layers=2, max_len=50, dropout=0.0)


def _config(epochs: int) -> TrainConfig:
    return TrainConfig(loss="ce", precision="fp32", batch_size=256, max_epochs=epochs, patience=epochs, seed=0)


def _summary(result: TrainResult) -> dict:
    return {"losses": [r.loss for r in result.history], "seconds": result.seconds,
            "seconds_per_epoch": result.seconds_per_epoch,
            "state": {k: v.detach().cpu() for k, v in result.model.state_dict().items()}}


def _rank(rank: int, size: int, port: int, epochs: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    init_from_env("cpu")
    try:
        result = train(synthetic_dataset(), MODEL, _config(epochs), progress=False)
        if rank == 0:
            Path(out).write_bytes(pickle.dumps(_summary(result)))
    finally:
        shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads of the one-process run")
    parser.add_argument("--out", type=Path, default=Path("bench/results/distributed-cpu.json"))
    args = parser.parse_args()
    with torch_threads(args.threads):
        one = _summary(train(synthetic_dataset(), MODEL, _config(args.epochs), progress=False))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rank0.pkl"
        mp.start_processes(_rank, args=(args.nproc, port, args.epochs, str(out)), nprocs=args.nproc,
                           start_method="spawn")
        many = pickle.loads(out.read_bytes())
    loss_diff = float(np.abs(np.array(one["losses"]) - many["losses"]).max())
    weight_diff = max(float((one["state"][k] - many["state"][k]).abs().max()) for k in one["state"])
    record = {"model": MODEL.name, "dim": MODEL.dim, "layers": MODEL.layers, "batch_size": 256,
              "epochs": args.epochs, "nproc": args.nproc, "one_process_threads": args.threads,
              "losses_one": one["losses"], "losses_many": many["losses"], "max_abs_loss_diff": loss_diff,
              "max_abs_weight_diff": weight_diff, "seconds_one": one["seconds"], "seconds_many": many["seconds"],
              "speedup": one["seconds"] / many["seconds"], "load_average_1min": os.getloadavg()[0],
              "machine": machine()}
    write_json(args.out, record)
    print({k: v for k, v in record.items() if k != "machine"})


if __name__ == "__main__":
    main()
