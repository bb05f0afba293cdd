"""docker-compose.yml's commands, ports and healthchecks, run as they are, without Docker.

Every long-running service of the compose file is started from its compose ``command`` with its
compose ``environment`` on top of its image's ``ENV`` (from the Dockerfile), in ``depends_on``
order, each once what it needs passes its compose healthcheck (``docker compose up --wait``).
Only the places change: every listener gets a free loopback port instead of its container's (the
compose addresses ``trainer:50051`` etc. are rewritten to them, so a port that disagrees with the
address the others use breaks the stack), and volumes become directories. The generator is reached
through ``dns:///localhost:<port>``, the same discovery path as ``dns:///generator:50052``. Each
healthcheck must fail before its service starts and pass after, the images' own HEALTHCHECKs must
pass too, and each service must stop within its ``stop_grace_period``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from deploy_helpers import (
    SERVICES,
    VENV_BIN,
    compose_config,
    dockerfile,
    exec_form,
    free_ports,
    image_env,
    stop,
    wait_for,
)

pytestmark = pytest.mark.slow
WEED_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port", "filer.port.grpc",
              "s3.port", "s3.port.grpc", "admin.port", "admin.port.grpc")
FILER = "127.0.0.1:8888"  # weed mini's default filer address, which the compose healthcheck lists the bucket on


@dataclass
class Local:
    """A compose service as a process here."""

    argv: list[str]
    env: dict[str, str]
    health: list[str] | None
    grace: float
    log: Path
    proc: subprocess.Popen | None = None


def _seconds(value: str | None, default: float) -> float:
    if not value:
        return default
    return sum(float(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in re.findall(r"([\d.]+)([hms])", value))


def _health(test: list[str], local: dict[str, str]) -> list[str]:
    kind, *rest = test
    if kind == "CMD-SHELL":
        command = rest[0].replace("$$", "$")
        for container, here in local.items():
            command = command.replace(container, here)
        return ["sh", "-c", command]
    assert kind == "CMD", test
    return rest


def plan(config: dict, tmp: Path) -> dict[str, Local]:
    services = config["services"]
    redis_port, trainer_port, generator_port, orchestrator_port = free_ports(4)
    weed = dict(zip(WEED_PORTS, free_ports(len(WEED_PORTS)), strict=True))
    s3 = next(a.split("=", 1)[1] for a in services["seaweedfs"]["command"] if a.startswith("-s3.port="))
    env_of = {name: services[name]["environment"] for name in SERVICES}
    ports = {"trainer": trainer_port, "generator": generator_port, "orchestrator": orchestrator_port}
    addresses = {"redis:6379": f"127.0.0.1:{redis_port}", f"seaweedfs:{s3}": f"127.0.0.1:{weed['s3.port']}",
                 f"trainer:{env_of['trainer']['TRAINER_PORT']}": f"127.0.0.1:{trainer_port}",
                 f"generator:{env_of['generator']['GENERATOR_PORT']}": f"localhost:{generator_port}"}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TRAINER_", "GENERATOR_", "ORCHESTRATOR_"))}
    base |= {"PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}

    def here(value: str, name: str) -> str:
        for container, local in addresses.items():
            value = value.replace(container, local)
        for mount in ("/state", "/data"):
            if value == mount or value.startswith(mount + "/"):
                value = str(tmp / name / mount.strip("/")) + value[len(mount):]
        return value

    plans = {}
    for name, service in services.items():
        if name == "data":  # a one-shot download from the internet
            continue
        log, grace = tmp / f"{name}.log", _seconds(service.get("stop_grace_period"), 10.0)
        test = service["healthcheck"]["test"]
        if name == "redis":
            (tmp / name).mkdir()
            argv = [*service["command"], "--port", str(redis_port), "--bind", "127.0.0.1", "--dir", str(tmp / name),
                    "--save", ""]
            plans[name] = Local(argv, base, ["redis-cli", "-p", str(redis_port), *test[2:]], grace, log)
        elif name == "seaweedfs":
            assert FILER in test[1]
            flags = [a.partition("=") for a in service["command"]]
            argv = [str(VENV_BIN / "weed"), *(f + s + here(v, name) for f, s, v in flags),
                    "-ip=127.0.0.1", "-ip.bind=127.0.0.1", *(f"-{k}={v}" for k, v in weed.items())]
            (tmp / name / "data").mkdir(parents=True)
            health = _health(test, {FILER: f"127.0.0.1:{weed['filer.port']}"}) if shutil.which("wget") else None
            plans[name] = Local(argv, base | service["environment"], health, grace, log)
        else:
            prefix = name.upper() + "_"
            image = {k: here(v, name) for k, v in image_env(name).items() if k not in ("PATH", "VIRTUAL_ENV")}
            env = base | image | {k: here(v, name) for k, v in service["environment"].items()}
            env |= {f"{prefix}HOST": "127.0.0.1", f"{prefix}PORT": str(ports[name])}
            for key in ("STATE_DIR", "DATA_DIR"):
                if f"{prefix}{key}" in env:
                    Path(env[f"{prefix}{key}"]).mkdir(parents=True, exist_ok=True)
            plans[name] = Local(service["command"], env, _health(test, {}), grace, log)
    return plans


def order(config: dict) -> list[str]:
    """The services in an order where each comes after everything it depends on."""
    deps = {n: set(s.get("depends_on", {})) - {"data"} for n, s in config["services"].items() if n != "data"}
    done: list[str] = []
    while len(done) < len(deps):
        done += sorted(n for n, d in deps.items() if n not in done and d <= set(done))
    return done


def passes(check: list[str], env: dict[str, str]) -> bool:
    return subprocess.run(check, env=env, capture_output=True, timeout=30).returncode == 0


def test_compose_services_start_pass_their_healthchecks_and_stop_in_time(tmp_path):
    config = compose_config()
    plans, started = plan(config, tmp_path), []
    try:
        for name in order(config):
            local = plans[name]
            if local.health is not None:
                assert not passes(local.health, local.env), f"{name}'s healthcheck passes before it starts"
            with local.log.open("wb") as out:
                local.proc = subprocess.Popen(local.argv, env=local.env, cwd=tmp_path, stdout=out,
                                              stderr=subprocess.STDOUT)
            started.append(name)
            check = local.health or ["true"]
            wait_for(lambda lp=local, c=check: lp.proc.poll() is not None or passes(c, lp.env), 150,
                     f"{name}'s healthcheck", interval=0.5)
            assert local.proc.poll() is None, f"{name} exited:\n{local.log.read_text()[-3000:]}"
        for name in SERVICES:  # the images' own HEALTHCHECK instructions
            probe = exec_form(dockerfile(name)["HEALTHCHECK"][0])
            assert passes(probe, plans[name].env), f"{name}'s image HEALTHCHECK fails"
        orchestrator = plans["orchestrator"].env
        url = f"http://127.0.0.1:{orchestrator['ORCHESTRATOR_PORT']}/readyz"
        with urllib.request.urlopen(url, timeout=10) as reply:
            checks = json.loads(reply.read())["checks"]
        generator = f"generator 127.0.0.1:{plans['generator'].env['GENERATOR_PORT']}"  # dns:///localhost:… expanded
        assert checks == {"redis": "ok", "storage": "ok", "trainer": "ok", generator: "ok"}
    finally:
        took = {name: stop(plans[name].proc, plans[name].grace + 10) for name in reversed(started)}
    for name, seconds in took.items():
        assert seconds < plans[name].grace, f"{name} took {seconds:.1f} s to stop (grace {plans[name].grace} s)"
