"""Helpers of the orchestrator tests (imported by conftest.py and the tests)."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "services"))  # the service tests' helpers
from processes import wait_for as wait_for  # re-exported: the orchestrator tests import it from here
from service_helpers import free_ports, service_env

from services.testing.stack import stop as stop  # re-exported: the orchestrator tests import it from here

ROOT = Path(__file__).resolve().parents[2]
TINY_MODEL = {"name": "sasrec", "dim": 16, "layers": 1, "heads": 1, "max_len": 20, "dropout": 0.0}
TINY_TRAIN = {"loss": "ce", "max_epochs": 2, "batch_size": 64, "lr": 0.01, "device": "cpu", "eval_batch_size": 256}
TINY_GENERATION = {"m": 2, "max_len": 20, "tau": 10, "batch_rows": 512}

__all__ = ["ROOT", "TINY_TRAIN", "Orchestrator", "free_ports", "orchestrator_env", "service_env", "start_orchestrator",
           "start_process", "stop", "tiny_spec", "wait_for"]


def tiny_spec(dataset: str, **overrides: Any) -> dict[str, Any]:
    """A 2-iteration run that takes seconds on one CPU core (the paper's recipe: no real-data stage)."""
    return {"dataset": dataset, "recipe": "paper", "iterations": 2, "student": TINY_MODEL, "train": TINY_TRAIN,
            "generation": TINY_GENERATION, "seed": 1, **overrides}


def start_process(module: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", module], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


@dataclass
class Orchestrator:
    """An orchestrator started as ``python -m services.orchestrator``."""

    proc: subprocess.Popen
    url: str
    log: Path


def orchestrator_env(settings: Any, port: int, **extra: str) -> dict[str, str]:
    """The environment that gives a process the same settings as ``settings`` (plus ``extra``)."""
    env = {k: v for k, v in service_env().items() if not k.startswith("ORCHESTRATOR_")}
    values = {"HOST": "127.0.0.1", "PORT": str(port), "REDIS_URL": settings.redis_url,
              "REDIS_PREFIX": settings.redis_prefix, "STORAGE_URL": settings.storage_url,
              "TRAINER_ADDR": settings.trainer_addr, "GENERATOR_ADDRS": ",".join(settings.generator_addrs),
              "STATE_DIR": str(settings.state_dir), "BUSY_WAIT_S": str(settings.busy_wait_s), **extra}
    return {**env, **{f"ORCHESTRATOR_{k}": v for k, v in values.items()}}


def start_orchestrator(env: dict[str, str], log: Path, wait: bool = True) -> Orchestrator:
    """Start the orchestrator; with ``wait``, return once ``/healthz`` answers."""
    proc = start_process("services.orchestrator", env, log)
    url = f"http://127.0.0.1:{env['ORCHESTRATOR_PORT']}"
    deadline = time.monotonic() + 60
    while wait:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc, signal.SIGKILL)
            raise RuntimeError(f"orchestrator did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    return Orchestrator(proc, url, log)
