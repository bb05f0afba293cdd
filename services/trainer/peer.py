"""``python -m services.trainer.peer``: node 1.. of the trainer's multi-node jobs, until SIGTERM.

The trainer service is node 0 (``TRAINER_NNODES`` above 1). A peer has no job queue and no storage
of its own: it keeps a ``torchrun --node-rank TRAINER_NODE_RANK`` waiting at the rendezvous, and
its workers receive the job from node 0 over torch.distributed (``services.trainer.share``). A
torchrun ends when its job does (done, failed, or cancelled on node 0, which makes the ranks here
fail) or when no job came within ``TRAINER_RDZV_TIMEOUT_S``; the loop then removes the job's
directory and starts the next one after a short pause, so one failed job never takes the peer down.
"""

from __future__ import annotations

import logging
import signal
import tempfile
import threading
import time
from pathlib import Path

from rsir.distributed import check_devices
from rsir.resources import resolve_device
from services.common.logs import configure_logging
from services.trainer.launch import POLL_S, start, stop, torchrun, workers_output
from services.trainer.rendezvous import Rendezvous
from services.trainer.settings import TrainerSettings

logger = logging.getLogger(__name__)
PAUSE_S = 2.0  # between two torchruns: node 0's last store closes first, and a failing setup cannot spin


def run_once(rendezvous: Rendezvous, node_rank: int, nproc: int, threads: int, stopping: threading.Event) -> None:
    """One torchrun at the rendezvous, to its end (or until ``stopping``), and a log line on how it ended."""
    with tempfile.TemporaryDirectory(prefix=f"rsir-peer-{node_rank}-") as name:
        directory = Path(name)
        started = time.monotonic()
        process = start(torchrun(nproc, directory, rendezvous, node_rank), directory, threads)
        try:
            while process.poll() is None and not stopping.wait(POLL_S):
                pass
        finally:
            stop(process)
        if stopping.is_set():
            return
        output = (directory / "log.txt").read_text(errors="replace")
        if (directory / "job.json").exists():  # written once the workers received a job
            if process.returncode == 0:
                logger.info("job done")
            else:
                logger.warning("job ended with exit %d (failed, or cancelled on node 0); the workers' output ends:\n%s",
                               process.returncode, workers_output(output))
        elif time.monotonic() - started >= rendezvous.timeout_s:
            logger.info("no job at %s within %d s; waiting again", rendezvous.address, rendezvous.timeout_s)
        else:
            logger.warning("torchrun exited %d before any job came; its output ends:\n%s", process.returncode,
                           workers_output(output))


def serve(rendezvous: Rendezvous, node_rank: int, nproc: int, threads: int, stopping: threading.Event) -> None:
    logger.info("peer node %d of %d: %d process(es) a job, rendezvous %s", node_rank, rendezvous.nnodes, nproc,
                rendezvous.address)
    while not stopping.is_set():
        run_once(rendezvous, node_rank, nproc, threads, stopping)
        stopping.wait(PAUSE_S)
    logger.info("stopped")


def main() -> None:
    settings = TrainerSettings()
    configure_logging(settings.log_level)
    rendezvous = settings.rendezvous()
    if rendezvous is None or settings.node_rank == 0:
        raise SystemExit("a peer needs TRAINER_NNODES > 1 and TRAINER_NODE_RANK 1..TRAINER_NNODES-1 "
                         "(node 0 is python -m services.trainer)")
    resolve_device(settings.device)
    check_devices(settings.device, settings.nproc)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    serve(rendezvous, settings.node_rank, settings.nproc, max(1, settings.threads() // settings.nproc), stopping)


if __name__ == "__main__":
    main()
