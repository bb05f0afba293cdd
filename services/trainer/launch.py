"""A training job as N local processes: torchrun starts ``services.trainer.worker`` N times.

With ``TRAINER_NPROC`` above 1 the servicer runs a job here instead of in its own process. The job
goes to a private directory (its config, the dataset version, the checkpoint it continues), and
``python -m torch.distributed.run --standalone`` starts the ranks on a free loopback port, each
pinned to one GPU on CUDA. With ``TRAINER_NNODES`` above 1 this is node 0 of a static rendezvous
(``services.trainer.rendezvous``) instead, and the workers send the job to the other nodes' ranks.
Rank 0's epoch reports are relayed as they are written; a cancelled call terminates the group
(torchrun passes SIGTERM on to its workers; the other nodes' ranks then fail) and publishes
nothing. The result is what one process would return, plus the test ranks the workers computed
sharded, so the service publishes rank 0's checkpoint exactly as it publishes its own.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np

from rsir.checkpoint import load_checkpoint, save_checkpoint
from rsir.config import ModelConfig, TrainConfig, to_dict
from rsir.datasets import SequenceDataset
from rsir.evaluation import EvalResult
from rsir.models import SequentialRecommender
from rsir.training import EpochReport, TrainResult, continue_on_real, train
from services.common.errors import Abort
from services.trainer.convert import TrainJob
from services.trainer.rendezvous import Rendezvous
from services.trainer.share import STARTED

logger = logging.getLogger(__name__)
POLL_S = 0.2
STOP_GRACE_S = 30.0
LOG_TAIL_CHARS = 2000
TORCHRUN_REPORT = "failed (exitcode"  # in torchrun's first line about failed workers


@dataclass(frozen=True)
class Fitted:
    """A finished training and, when the workers ranked them, the test users' ranks."""

    result: TrainResult
    test: EvalResult | None = None


def fit(dataset: SequenceDataset, model_config: ModelConfig, config: TrainConfig,
        init: tuple[SequentialRecommender, dict] | None, emit: Callable[[EpochReport], None],
        should_stop: Callable[[], bool] | None = None, warm_start: bool = False) -> TrainResult:
    """A job's training in this process (or rank): a fresh one, or with ``init`` (a published
    checkpoint's model and the metrics it was published with) the real-data stage alone, or with
    ``warm_start`` the whole training from ``init``'s weights."""
    if init is None or warm_start:
        return train(dataset, model_config, config, model=None if init is None else init[0], on_epoch=emit,
                     should_stop=should_stop, progress=False)
    model, m = init
    return continue_on_real(dataset, model, config, valid=m["valid"], best_epoch=m["best_epoch"], epochs=m["epochs"],
                            seconds=m["seconds"], on_epoch=emit, should_stop=should_stop, progress=False)


def torchrun(nproc: int, directory: Path, rendezvous: Rendezvous | None, node_rank: int = 0) -> list[str]:
    """The command that starts this node's ``nproc`` workers of the job in ``directory``."""
    nodes = ["--standalone"] if rendezvous is None else rendezvous.torchrun_args(node_rank)
    return [sys.executable, "-m", "torch.distributed.run", *nodes, f"--nproc-per-node={nproc}",
            "-m", "services.trainer.worker", str(directory)]


def start(command: list[str], directory: Path, threads: int) -> subprocess.Popen:
    """Start a torchrun of ``threads`` intra-op threads per worker, its output to ``directory``'s ``log.txt``."""
    with (directory / "log.txt").open("w") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "OMP_NUM_THREADS": str(threads)})


def run_job(job: TrainJob, dataset: SequenceDataset, nproc: int, threads: int, max_items: int,
            init: tuple[SequentialRecommender, dict] | None, emit: Callable[[EpochReport], None],
            should_stop: Callable[[], bool], rendezvous: Rendezvous | None = None) -> Fitted | None:
    """Train ``job`` on ``nproc`` local processes of ``threads`` intra-op threads each (and as many
    on each peer node with ``rendezvous``); None when ``should_stop`` turned true first."""
    with tempfile.TemporaryDirectory(prefix=f"rsir-train-{job.job_id}-") as name:
        directory = Path(name)
        dataset.save(directory / "data.npz")
        (directory / "job.json").write_text(json.dumps({"model": to_dict(job.model), "train": to_dict(job.train),
                                                        "max_items": max_items, "warm_start": job.warm_start}))
        if init is not None:
            save_checkpoint(directory / "init.pt", init[0], metrics=init[1])
        started = time.monotonic()
        process = start(torchrun(nproc, directory, rendezvous), directory, threads)
        try:
            if not _relay(process, directory / "progress.jsonl", emit, should_stop):
                return None
        finally:
            stop(process)
        if (process.returncode != 0 and rendezvous is not None and not (directory / STARTED).exists()
                and time.monotonic() - started >= rendezvous.timeout_s):  # else it failed otherwise (e.g. port taken)
            raise Abort(grpc.StatusCode.FAILED_PRECONDITION, rendezvous.missing())
        tail = workers_output((directory / "log.txt").read_text(errors="replace"))
        if not (directory / "result.json").exists():
            raise RuntimeError(f"the {nproc} training processes failed (exit {process.returncode}): {tail}")
        if process.returncode != 0:  # rank 0 wrote the result after every rank's last collective
            logger.warning("the training processes exited %d after finishing job %s; its result is kept: %s",
                           process.returncode, job.job_id, tail)
        return _collect(directory)


def workers_output(log: str) -> str:
    """The end of the workers' output in torchrun's ``log``, before torchrun's own report that they
    failed (which names no cause)."""
    report = log.find(TORCHRUN_REPORT)
    end = max(log.rfind("\n", 0, report), 0) if report >= 0 else len(log)
    return log[:end].rstrip()[-LOG_TAIL_CHARS:]


def _relay(process: subprocess.Popen, progress: Path, emit: Callable[[EpochReport], None],
           should_stop: Callable[[], bool]) -> bool:
    """Pass rank 0's reports on until the group exits (True) or ``should_stop`` (False)."""
    seen = 0
    while True:
        finished = process.poll() is not None
        if progress.exists():
            complete = progress.read_text().split("\n")[:-1]  # what follows the last newline may be half-written
            for line in complete[seen:]:
                emit(EpochReport(**json.loads(line)))
            seen = len(complete)
        if finished:
            return True
        if should_stop():
            return False
        time.sleep(POLL_S)


def stop(process: subprocess.Popen) -> None:
    """Terminate a torchrun and its workers (by its PID), killing it if it outlasts the grace."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _collect(directory: Path) -> Fitted:
    summary = json.loads((directory / "result.json").read_text())
    model, _ = load_checkpoint(directory / "model.pt")
    summary["history"] = [EpochReport(**r) for r in summary["history"]]
    return Fitted(TrainResult(model=model, **summary), EvalResult(np.load(directory / "ranks.npy")))
