"""Status-endpoint latency of the orchestrator under a fixed request rate → bench/results/status-latency.json.

The bar: status endpoints answer in ≤ 50 ms p99 under 200 requests/s on loopback.

It starts a real ``redis-server`` and the orchestrator (``python -m services.orchestrator``, one
uvicorn worker) on free loopback ports, seeds Redis with completed runs shaped like real ones
(3 iterations with metrics, dataset statistics, generation and shard statistics), then sends an
open-loop load: request i is sent at t0 + i / rate whether or not earlier ones have answered, so a
slow server cannot slow the load down and hide its queueing (no coordinated omission). Latency is
measured from each request's scheduled time to its response. The orchestrator's resident memory is
read before and after the load (its growth) and at its peak. Both processes are stopped by PID.

Usage: ``python bench/status_latency.py [--rate 200] [--seconds 15]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
import redis
import uvloop

from rsir import jsonio
from rsir.resources import machine

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PREFIX = "bench"
# what a dashboard and a polling client ask for, weighted
MIX = (("run", 0.6), ("runs", 0.2), ("healthz", 0.1), ("dataset", 0.1))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_run(i: int, versions: list[str]) -> dict[str, Any]:
    """A completed 2-iteration run document, as the driver writes one."""
    now = time.time() - 3600 + i
    iterations = []
    for k in range(3):
        metrics = {f"{m}@{n}": 0.05 + 0.01 * k + 0.001 * n for m in ("ndcg", "recall") for n in (5, 10, 20)}
        iterations.append({
            "iteration": k, "dataset": versions[k],
            "dataset_stats": {"users": 22363, "synthetic_sequences": 30000 * k, "sequences": 22363 + 30000 * k,
                              "items": 12101, "interactions": 198502 + 250000 * k, "avg_length": 8.9,
                              "density": 0.00073 * (1 + k), "apen": 0.5 - 0.05 * k, "apen_reciprocal": 2.0},
            "student": {"job_id": f"r{i:012x}-{k}-student",
                        "checkpoint": {"uri": f"file:///x/{k}.pt", "sha256": "0" * 64}, "test": metrics,
                        "valid": metrics, "best_epoch": 30, "epochs": 50, "stopped_by": "patience",
                        "seconds": 300.0, "seconds_per_epoch": 6.0, "peak_memory_mb": 900.0,
                        "dataset_version": versions[k], "reused": False},
            "teacher": None, "timings": {"train_student": 300.0, "generate": 40.0, "merge": 2.0},
            "generation": None if k == 2 else {
                "teacher_checkpoint": {"uri": f"file:///x/{k}.pt", "sha256": "0" * 64},
                "keys": [f"generated/r{i:012x}/{k}/shard-{s}-of-4.npz" for s in range(4)],
                "stats": {"rows": 111815, "accepted_steps": 400000, "stopped_fidelity": 90000,
                          "stopped_empty_pool": 1000, "stopped_length": 20815, "emitted": 30000, "too_short": 81815},
                "shards": [{"index": s, "address": f"gen-{s}:50052", "attempts": 1, "seconds": 40.0,
                            "emitted": 7500} for s in range(4)]},
            "merge": None if k == 2 else {"generated": 30000, "duplicates": 10, "added": 29990}})
    return {"id": f"r{i:012x}", "name": f"bench run {i}", "status": "completed", "stage": "done", "iteration": 2,
            "iterations_total": 2, "spec": {"dataset": "beauty", "iterations": 2, "seed": i}, "created_at": now,
            "updated_at": now, "started_at": now, "finished_at": now + 1000, "error": None, "datasets": versions,
            "iterations": iterations, "selected": 1, "significance": None, "stopped_by": "iterations",
            "report": None, "resumes": 0}


def seed(client: redis.Redis, runs: int) -> tuple[list[str], list[str]]:
    versions = [f"{k:064x}" for k in range(1, 4)]
    with client.pipeline() as pipe:
        for k, v in enumerate(versions):
            record = {"version": v, "name": f"beauty+rsir{k}", "uri": f"file:///x/{v}.npz", "sha256": v, "size": 1,
                      "created_at": time.time(), "source": "generated" if k else "beauty",
                      "parent": versions[k - 1] if k else None, "stats": fake_run(0, versions)["iterations"][k][
                          "dataset_stats"]}
            pipe.set(f"{PREFIX}:dataset:{v}", json.dumps(record))
            pipe.zadd(f"{PREFIX}:datasets", {v: time.time()})
        ids = []
        for i in range(runs):
            run = fake_run(i, versions)
            ids.append(run["id"])
            pipe.set(f"{PREFIX}:run:{run['id']}", json.dumps(run))
            pipe.zadd(f"{PREFIX}:runs", {run["id"]: run["created_at"]})
            pipe.sadd(f"{PREFIX}:runs:status:completed", run["id"])
        pipe.execute()
    return ids, versions


def memory_mb(pid: int) -> dict[str, float]:
    """Resident memory of a process now (VmRSS) and at its peak (VmHWM), from /proc (Linux)."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return {name: int(fields[name].split()[0]) / 1024 for name in ("VmRSS", "VmHWM")}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc/<pid>/stat (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the orchestrator exited during start-up")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


async def load(base: str, paths: dict[str, list[str]], rate: float, seconds: float, record: bool,
               rng: np.random.Generator) -> list[tuple[str, float, int]]:
    """Open-loop load: (endpoint, latency from the scheduled send time in s, status) per request.

    aiohttp, not httpx: the load generator shares the machine with the server, and httpx costs
    several times more CPU per request, which would show up as server latency.
    """
    names = [m[0] for m in MIX]
    kinds = rng.choice(len(MIX), size=int(rate * seconds), p=[m[1] for m in MIX])
    results: list[tuple[str, float, int]] = []
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(base, connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as client:
        async def one(kind: str, path: str, due: float) -> None:
            try:
                async with client.get(path) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, TimeoutError):
                status = 0
            if record:
                results.append((kind, time.perf_counter() - due, status))

        start = time.perf_counter() + 0.05
        tasks = []
        for i, kind in enumerate(kinds):
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            choices = paths[names[kind]]
            tasks.append(asyncio.create_task(one(names[kind], choices[i % len(choices)], due)))
        await asyncio.gather(*tasks)
    return results


def summarize(latencies: list[float], statuses: list[int], seconds: float) -> dict[str, Any]:
    ms = np.asarray(latencies) * 1000
    return {"requests": len(ms), "errors": int(sum(s != 200 for s in statuses)), "achieved_rps": len(ms) / seconds,
            **{f"p{q}_ms": float(np.percentile(ms, q)) for q in (50, 90, 99)}, "max_ms": float(ms.max()),
            "mean_ms": float(ms.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--runs", type=int, default=200, help="runs seeded in Redis")
    parser.add_argument("--out", type=Path, default=RESULTS / "status-latency.json")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rsir-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        redis_port, http_port = free_port(), free_port()
        procs.append(subprocess.Popen([shutil.which("redis-server") or "redis-server", "--bind", "127.0.0.1", "--port",
                                       str(redis_port), "--dir", str(tmp), "--save", "", "--appendonly", "no"],
                                      stdout=subprocess.DEVNULL))
        client = redis.Redis(port=redis_port)
        for _ in range(100):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                break
            time.sleep(0.05)
        ids, versions = seed(client, args.runs)
        env = {**os.environ, "ORCHESTRATOR_HOST": "127.0.0.1", "ORCHESTRATOR_PORT": str(http_port),
               "ORCHESTRATOR_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "ORCHESTRATOR_REDIS_PREFIX": PREFIX,
               "ORCHESTRATOR_STORAGE_URL": str(tmp / "objects"), "ORCHESTRATOR_STATE_DIR": str(tmp),
               "ORCHESTRATOR_TRAINER_ADDR": "127.0.0.1:9", "ORCHESTRATOR_GENERATOR_ADDRS": "127.0.0.1:9",
               "ORCHESTRATOR_LOG_LEVEL": "WARNING", "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-m", "services.orchestrator"], cwd=ROOT, env=env))
        base = f"http://127.0.0.1:{http_port}"
        wait_http(f"{base}/healthz", procs[-1])
        paths = {"run": [f"/runs/{i}" for i in ids], "runs": ["/runs?limit=20"], "healthz": ["/healthz"],
                 "dataset": [f"/datasets/{v}" for v in versions]}
        rng = np.random.default_rng(0)
        uvloop.run(load(base, paths, 50, 2, False, rng))  # warm-up, not recorded
        before, cpu_before, own_before = memory_mb(procs[-1].pid), cpu_seconds(procs[-1].pid), cpu_seconds(os.getpid())
        results = uvloop.run(load(base, paths, args.rate, args.seconds, True, rng))
        after, cpu_after, own_after = memory_mb(procs[-1].pid), cpu_seconds(procs[-1].pid), cpu_seconds(os.getpid())
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    overall = summarize([r[1] for r in results], [r[2] for r in results], args.seconds)
    report: dict[str, Any] = {
        "benchmark": "status-latency", "date": time.strftime("%Y-%m-%d"), "machine": machine(),
        "setup": {"rate_rps": args.rate, "seconds": args.seconds, "runs_seeded": args.runs, "mix": dict(MIX),
                  "server": "python -m services.orchestrator (1 uvicorn worker) + redis-server, loopback",
                  "latency": "from each request's scheduled send time (open loop) to its response",
                  "cpu_affinity": sorted(os.sched_getaffinity(0)),  # server, Redis and load share these cores
                  "load_generator": "aiohttp + uvloop"},
        "overall": overall,
        "orchestrator_memory_mb": {"rss_before": before["VmRSS"], "rss_after": after["VmRSS"],
                                   "growth": after["VmRSS"] - before["VmRSS"], "peak": after["VmHWM"]},
        # what one request costs the server, whatever the load generator costs on the same machine
        "orchestrator_cpu_ms_per_request": 1000 * (cpu_after - cpu_before) / max(len(results), 1),
        "load_generator_cpu_ms_per_request": 1000 * (own_after - own_before) / max(len(results), 1),
        "endpoints": {name: summarize([r[1] for r in results if r[0] == name], [r[2] for r in results if r[0] == name],
                                      args.seconds) for name, _ in MIX},
        "bar": {"p99_ms_at_most": 50, "rate_rps_at_least": 200,
                "met": overall["p99_ms"] <= 50 and args.rate >= 200 and overall["errors"] == 0},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    jsonio.write(args.out, report)
    print(json.dumps({"overall": overall, "cpu_ms_per_request": report["orchestrator_cpu_ms_per_request"],
                      "bar_met": report["bar"]["met"]}, indent=2))


if __name__ == "__main__":
    main()
