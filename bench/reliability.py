"""Reliability figures → bench/results/reliability-*.json (docs/reliability.md explains each).

- ``fuzz``: schemathesis fuzzing of the orchestrator's HTTP API from its OpenAPI schema (positive and
  negative requests per operation) plus generated upload bodies, against a real orchestrator
  process and redis-server; the bar is ≥ 1,000 requests and 0 server errors.
- ``runs``: ``--count`` runs submitted at once to a whole system as processes (Redis, SeaweedFS, the
  trainer, two generators, the orchestrator with ``--concurrency`` workers): accepted, queued,
  finished, and how many ran at once.
- ``faults``: the fault tests (``tests/reliability/test_faults.py``), with the object store down for
  ``--outage`` seconds (30; the test suite uses 10), their outcomes and times.

The status API under 200 requests/s for 60 s is ``bench/status_latency.py --seconds 60``.
Processes are started on free loopback ports and stopped by PID; the harness is the one the
reliability tests use (``services.testing``).

Usage: ``python bench/reliability.py fuzz|runs|faults [options]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from rsir import jsonio
from rsir.data import write_sequences
from rsir.resources import machine
from rsir.synthetic import synthetic_dataset
from services.testing.fuzz import fuzz_schema, fuzz_uploads, run_outcomes
from services.testing.load import flood
from services.testing.stack import free_ports, redis_server, start_api, start_stack

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"

TINY_RUN = {"significance": False, "seed": 1,
            "student": {"name": "sasrec", "dim": 16, "layers": 1, "heads": 1, "max_len": 20, "dropout": 0.0},
            "train": {"max_epochs": 2, "batch_size": 32, "lr": 0.01, "device": "cpu", "eval_batch_size": 256},
            "generation": {"m": 2, "max_len": 20, "tau": 10, "batch_rows": 256}}


def fuzz(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    port = free_ports(1)[0]
    redis = redis_server(root / "redis", port, "fuzz").start()
    try:
        api = start_api(root / "api", f"redis://:fuzz@127.0.0.1:{port}/0")
        try:
            t0 = time.perf_counter()
            report = fuzz_schema(api.url, api.token, examples=args.examples, seed_value=args.seed)
            fuzz_uploads(api.url, api.token, examples=args.examples, seed_value=args.seed, report=report)
            seconds = time.perf_counter() - t0
            alive = api.process.alive
            outcomes = run_outcomes(f"redis://:fuzz@127.0.0.1:{port}/0", api.prefix)
        finally:
            api.process.stop()
    finally:
        redis.stop()
    summary = report.to_json()
    return {"setup": {"examples_per_operation_and_mode": args.examples, "seed": args.seed,
                      "server": "python -m services.orchestrator (1 uvicorn worker), redis-server, local storage, "
                                "1 MB upload cap, API token set (sent with every request)",
                      "modes": "schemathesis positive + negative per operation; upload bodies: random bytes, "
                               "hostile numbers, CSV, JSON nested up to 5,000 deep"},
            "seconds": seconds, "server_alive_after": alive, "runs_created": outcomes, **summary,
            "bar": {"requests_at_least": 1000, "server_errors": 0,
                    "met": summary["requests"] >= 1000 and summary["server_errors"] == 0 and alive}}


def runs(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    stack = start_stack(root, max_concurrent_runs=args.concurrency)
    try:
        data = synthetic_dataset(num_users=120, num_items=40, num_clusters=4, seed=3)
        write_sequences(root / "tiny.txt", data.users, data.sequences.to_list())
        with stack.http() as http:
            version = http.post("/datasets", params={"filename": "tiny.txt"},
                                content=(root / "tiny.txt").read_bytes()).json()["version"]
        spec = {**TINY_RUN, "dataset": version, "iterations": args.iterations}
        result = flood(stack, spec, args.count, timeout=3600)
    finally:
        stack.close()
    return {"setup": {"count": args.count, "max_concurrent_runs": args.concurrency, "spec": spec,
                      "system": "redis-server (AOF), SeaweedFS, trainer (2 calls at once), 2 generators, "
                                "orchestrator; all processes on this machine"},
            **result,
            "bar": {"met": result["accepted"] == args.count and result["statuses"] == {"completed": args.count}
                    and result["most_running_at_once"] <= args.concurrency}}


def faults(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    report = root / "faults.xml"
    t0 = time.perf_counter()
    env = {**os.environ, "RSIR_OUTAGE_S": str(args.outage)}
    code = subprocess.call([sys.executable, "-m", "pytest", "tests/reliability/test_faults.py", "-q",
                            "-p", "no:cacheprovider", f"--junitxml={report}"], cwd=ROOT, env=env)
    tests = {case.get("name"): {"outcome": "failed" if case.find("failure") is not None or
                                case.find("error") is not None else "passed", "seconds": float(case.attrib["time"])}
             for case in ET.parse(report).iter("testcase")}
    return {"setup": {"object_store_outage_s": args.outage}, "seconds": time.perf_counter() - t0, "tests": tests,
            "bar": {"met": code == 0 and all(t["outcome"] == "passed" for t in tests.values())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fuzz")
    p.add_argument("--examples", type=int, default=100, help="per operation and mode, and per upload kind")
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("runs")
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=2)
    p.add_argument("--iterations", type=int, default=1)
    p = sub.add_parser("faults")
    p.add_argument("--outage", type=float, default=30.0, help="seconds the object store stays down")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rsir-reliability-") as tmp:
        result = {"fuzz": fuzz, "runs": runs, "faults": faults}[args.command](args, Path(tmp))
    report = {"benchmark": f"reliability-{args.command}", "date": time.strftime("%Y-%m-%d"), "machine": machine(),
              **result}
    out = RESULTS / f"reliability-{args.command}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    jsonio.write(out, report)
    print(json.dumps({k: v for k, v in report.items() if k not in ("machine", "operations", "failures")}, indent=2))


if __name__ == "__main__":
    main()
