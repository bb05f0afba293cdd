"""Many runs submitted at once to a running system: are all accepted, queued and finished, and how
many ran at the same time? Used by ``tests/reliability/test_load.py`` and ``bench/reliability.py``."""

from __future__ import annotations

import collections
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from services.testing.stack import Stack

FINAL = ("completed", "failed", "cancelled")


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of [start, end) intervals that overlap at one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def flood(stack: Stack, spec: dict[str, Any], count: int, timeout: float = 600.0) -> dict[str, Any]:
    """POST ``count`` runs of ``spec`` concurrently, then wait for all of them to end."""
    store = stack.store()
    with stack.http() as http, ThreadPoolExecutor(min(count, 32)) as pool:
        t0 = time.perf_counter()
        responses = list(pool.map(lambda _: http.post("/runs", json=spec), range(count)))
        submitted = time.perf_counter() - t0
    ids = [r.json()["id"] for r in responses if r.status_code == 201]
    queue_peak, deadline = 0, time.monotonic() + timeout
    while True:
        queue_peak = max(queue_peak, store.runs.queue_length())
        runs = [run for run in (store.runs.get(i) for i in ids) if run is not None]
        if len(runs) == len(ids) and all(r["status"] in FINAL for r in runs):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{sum(r['status'] not in FINAL for r in runs)} runs still open after {timeout} s")
        time.sleep(0.2)
    elapsed = time.perf_counter() - t0
    waits = np.array([r["started_at"] - r["created_at"] for r in runs])
    durations = np.array([r["finished_at"] - r["started_at"] for r in runs])
    return {
        "submitted": count, "accepted": len(ids), "http_statuses": dict(collections.Counter(
            str(r.status_code) for r in responses)), "seconds_to_submit": submitted, "seconds_to_finish": elapsed,
        "statuses": dict(collections.Counter(r["status"] for r in runs)), "lost": count - len(runs),
        "errors": sorted({r["error"] for r in runs if r["error"]}), "queue_peak": queue_peak,
        "most_running_at_once": most_at_once([(r["started_at"], r["finished_at"]) for r in runs]),
        "queue_wait_s": {"p50": float(np.median(waits)), "max": float(waits.max())},
        "run_s": {"p50": float(np.median(durations)), "max": float(durations.max())},
        "runs_per_minute": 60 * len(runs) / elapsed}
