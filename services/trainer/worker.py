"""One rank of a data-parallel training job: ``torchrun ... -m services.trainer.worker DIR``.

``services.trainer.launch`` writes the job into DIR (``job.json``, ``data.npz`` and, to continue a
checkpoint, ``init.pt``) and starts N of these under torchrun. Every rank trains its share
(``rsir.training``) and ranks its share of the test users (``rsir.evaluation``); rank 0 appends each
epoch's report to ``progress.jsonl`` and at the end writes ``model.pt``, ``ranks.npy`` and
``result.json`` (written last: its presence means the job finished). Across nodes, rank 0 first sends
the job to the other nodes' ranks, whose directories start empty (``services.trainer.share``).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch.distributed as dist

from rsir.checkpoint import load_checkpoint, save_checkpoint
from rsir.config import ModelConfig, TrainConfig, from_dict
from rsir.datasets import SequenceDataset
from rsir.distributed import World, init_from_env, shutdown
from rsir.evaluation import evaluate
from rsir.training import EpochReport
from services.trainer import share
from services.trainer.launch import fit


def run(directory: Path, job: dict, world: World) -> None:
    model_config, config = from_dict(ModelConfig, job["model"]), from_dict(TrainConfig, job["train"])
    dataset = SequenceDataset.load(directory / "data.npz", max_items=job["max_items"])

    def emit(report: EpochReport) -> None:
        if world.is_main:
            with (directory / "progress.jsonl").open("a") as progress:
                progress.write(json.dumps(dataclasses.asdict(report)) + "\n")

    init = None
    if (directory / "init.pt").exists():
        model, info = load_checkpoint(directory / "init.pt")
        init = (model, info.metrics)
    result = fit(dataset, model_config, config, init, emit, warm_start=job.get("warm_start", False))
    ranks = evaluate(result.model, dataset, "test", batch_size=config.eval_batch_size, device=world.device,
                     world=world).ranks
    if world.is_main:
        save_checkpoint(directory / "model.pt", result.model)
        np.save(directory / "ranks.npy", ranks)
        summary = {f.name: getattr(result, f.name) for f in dataclasses.fields(result) if f.name != "model"}
        summary["history"] = [dataclasses.asdict(r) for r in result.history]
        (directory / "result.json.tmp").write_text(json.dumps(summary))
        (directory / "result.json.tmp").replace(directory / "result.json")


def main() -> None:
    directory = Path(sys.argv[1])
    job = share.job_spec(directory)
    world = init_from_env(job["train"]["device"])
    if world is None:
        raise SystemExit("services.trainer.worker runs under torchrun with two or more processes")
    try:
        share.receive_files(directory, world)
        run(directory, job, world)
        dist.barrier()  # no rank tears the group down while another is still in its last collective
    finally:
        shutdown()


if __name__ == "__main__":
    main()
