"""``rsir up``: the local stack as a user runs it (the README's first command)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import urllib.request

import pytest
from deploy_helpers import VENV_BIN, alive, descendants, processes_in, wait_for

RSIR = str(VENV_BIN / "rsir")


def user_env() -> dict[str, str]:
    """A shell without service settings and without benchmarks (the demo then runs on synthetic data)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TRAINER_", "GENERATOR_", "ORCHESTRATOR_")) and k != "RSIR_DATA_DIR"}
    return env | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def get(url: str):
    with urllib.request.urlopen(url, timeout=30) as reply:
        body = reply.read()
        return json.loads(body) if reply.headers.get_content_type() == "application/json" else body.decode()


@pytest.mark.slow
def test_rsir_up_demo_finishes_a_run_and_ctrl_c_stops_every_process(tmp_path):
    state, log = tmp_path / "state", tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([RSIR, "up", "--demo", "--port", "0", "--state-dir", str(state)], cwd=tmp_path,
                                env=user_env(), stdout=out, stderr=subprocess.STDOUT)
    output = log.read_text
    try:
        url = wait_for(lambda: proc.poll() is not None or re.search(r"Dashboard: (http://127\.0\.0\.1:\d+)/", output()),
                       180, "the stack to be ready", interval=0.5)
        assert proc.poll() is None, output()
        url = url.group(1)
        wait_for(lambda: proc.poll() is not None or "completed; the stack keeps running" in output(), 400,
                 "the demo run to finish", interval=0.5)
        assert proc.poll() is None, output()
        [run] = get(f"{url}/runs")
        assert run["status"] == "completed" and run["spec"]["dataset"] == "synthetic"
        assert len(run["iterations"]) == run["spec"]["iterations"] + 1
        assert all(0 < it["student"]["test"]["recall@10"] <= 1 for it in run["iterations"])
        assert run["id"] in get(f"{url}/ui/runs/{run['id']}")
        assert re.search(r"iteration 0\*? +ndcg@5 [0-9.]+ +ndcg@10", output())
        children = descendants(proc.pid)
        embedded = processes_in(state)  # the embedded redis-server daemonizes into the state directory
        assert len(children) >= 3 and embedded, (children, embedded)
    finally:
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            rc = proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert rc == 0 and output().rstrip().endswith("rsir up: stopped"), output()
    assert "Traceback" not in output()
    wait_for(lambda: not any(alive(pid) for pid in children | embedded), 10, "every process to exit", interval=0.5)
    assert (state / "logs" / "orchestrator.log").is_file()


def test_rsir_up_says_when_its_port_is_taken(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run([RSIR, "up", "--port", str(port), "--state-dir", str(tmp_path)], env=user_env(),
                              capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr == f"rsir: error: port {port} is in use; pick another with --port " \
                                                   "(0: any free port)\n"
    assert "starting" not in proc.stdout
