"""The upload stage of bench/scaling.py: ``POST /datasets`` to an orchestrator process of its own,
measured from ``/proc`` (the orchestrator's CPU time and peak resident set, not the client's)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rsir.datasets import SequenceDataset
from services.testing.stack import stop


def upload(cache: Path, scale: float, opts: dict[str, Any]) -> dict[str, Any]:
    """``POST /datasets`` of the CSV log to an orchestrator of its own (embedded Redis, local storage);
    time, CPU and peak resident set are the orchestrator process's, measured from ``/proc``."""
    import httpx

    state = cache / "orchestrator"
    shutil.rmtree(state, ignore_errors=True)  # a fresh store: the upload is stored, not found already there
    env = {**os.environ, "ORCHESTRATOR_HOST": "127.0.0.1", "ORCHESTRATOR_PORT": str(opts["port"]),
           "ORCHESTRATOR_STATE_DIR": str(state), "ORCHESTRATOR_MAX_UPLOAD_MB": "8192",
           "ORCHESTRATOR_TRAINER_ADDR": "127.0.0.1:9", "ORCHESTRATOR_GENERATOR_ADDRS": "127.0.0.1:9"}
    url = f"http://127.0.0.1:{opts['port']}"
    import rsir

    tree = Path(rsir.__file__).resolve().parents[1]  # the library under test (PYTHONPATH may name another)
    proc = subprocess.Popen([sys.executable, "-m", "services.orchestrator"], cwd=tree, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_healthy(url, proc)
        before, cpu = _proc_status(proc.pid), _proc_cpu(proc.pid)
        path = cache / "log.csv"
        start = time.perf_counter()
        with httpx.Client(base_url=url, timeout=3600) as client, path.open("rb") as body:
            response = client.post("/datasets", params={"filename": "log.csv", "name": f"scale-{scale:g}"},
                                   content=iter(lambda: body.read(1 << 20), b""))
        seconds = time.perf_counter() - start
        assert response.status_code in (200, 201), response.text[:300]
        after = _proc_status(proc.pid)
        return {"seconds": seconds, "cpu_seconds": _proc_cpu(proc.pid) - cpu, "peak_mb": after["VmHWM"],
                "setup_peak_mb": before["VmHWM"], "rss_after_mb": after["VmRSS"], "status": response.status_code,
                "version_matches": response.json()["version"] == SequenceDataset.load(cache / "dataset.npz").version}
    finally:
        stop(proc, timeout=30)


def _wait_healthy(url: str, proc: subprocess.Popen) -> None:
    import httpx

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the orchestrator did not start")


def _proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, MB."""
    with open(f"/proc/{pid}/status") as f:
        fields = dict(line.split(":", 1) for line in f)
    return {k: int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM")}


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
