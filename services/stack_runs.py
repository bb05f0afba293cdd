"""What ``rsir up`` does with runs, over HTTP only: submit the demo once, follow a run's event stream
in the terminal (stages, every training epoch, shards, merges) and say what the run found.

A terminal is where a user of ``rsir up`` looks, so everything the dashboard shows live is printed
here too: a training that runs for half a minute prints a line per epoch, and a run resumed after a
restart says so before it goes on.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from rsir.errors import RsirError

FINAL = ("completed", "failed", "cancelled")
DEMO_NAME = "demo"
DEMO_RECIPE = "demo"
SIGNIFICANT = 0.05


def call(url: str, body: bytes | None = None, content_type: str = "application/json") -> Any:
    """GET (or, with ``body``, POST) and read a JSON reply; an error reply becomes an RsirError with its detail."""
    headers = {"Content-Type": content_type}
    token = os.environ.get("ORCHESTRATOR_API_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=60) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        raise RsirError(f"{url}: {exc.code} {exc.read().decode(errors='replace')[:2000]}") from None


def request(url: str, body: dict[str, Any] | None = None) -> Any:
    """GET, or POST ``body`` as JSON."""
    return call(url, None if body is None else json.dumps(body).encode())


def demo_run(version: str) -> dict[str, Any]:
    """The demo run's spec: the uploaded demo data with the ``demo`` recipe."""
    return {"name": DEMO_NAME, "dataset": version, "recipe": DEMO_RECIPE}


def demo_spec(url: str, state_dir: Path) -> dict[str, Any]:
    """Upload the demo's built-in data (``rsir.synthetic.demo_dataset``; content-addressed, so the
    same version every time) and return the demo run on it."""
    from rsir.synthetic import demo_dataset

    path = state_dir / "demo-data.npz"
    demo_dataset().save(path)
    return demo_run(call(f"{url}/datasets?filename=demo.npz", path.read_bytes(), "application/octet-stream")["version"])


def announce_resumed(url: str, since: float, out: TextIO) -> None:
    """Name the runs a previous stack had started and left unfinished: the orchestrator resumes them
    first, where they stopped, before any run queued behind them."""
    for run in request(f"{url}/runs?limit=500"):
        if run["status"] == "running" and (run.get("started_at") or since) < since:
            out.write(f"rsir up: resuming run {run['id']} ({run.get('name') or run['spec']['dataset']}), interrupted "
                      f"when the stack stopped, at {run['stage']}, iteration {run['iteration']}\n")
    out.flush()


def submit_demo(url: str, state_dir: Path, out: TextIO) -> str:
    """The demo run's id: the existing one unless every earlier demo failed or was cancelled."""
    demos = [r for r in request(f"{url}/runs?limit=500") if r.get("name") == DEMO_NAME]
    alive = [r for r in demos if r["status"] not in ("failed", "cancelled")]
    if alive:
        run = alive[0]  # newest first
        out.write(f"rsir up: the demo run exists already ({run['id']}, {run['status']}): {url}/ui/runs/{run['id']}\n")
        return str(run["id"])
    created = request(f"{url}/runs", demo_spec(url, state_dir))
    again = " again (the last one did not complete)" if demos else ""
    out.write(f"rsir up: submitted the demo run{again} {created['id']}: {url}/ui/runs/{created['id']}\n")
    return str(created["id"])


def events(url: str, run_id: str, check: Callable[[], None]) -> Iterator[tuple[str, dict[str, Any]]]:
    """A run's server-sent events, (type, data), until ``finished``; reconnects after the last one seen
    (``check`` raises when the orchestrator itself is gone)."""
    last = "0-0"
    while True:
        headers = {"Accept": "text/event-stream", "Last-Event-ID": last}
        try:
            with urllib.request.urlopen(urllib.request.Request(f"{url}/runs/{run_id}/events", headers=headers),
                                        timeout=60) as reply:
                fields: dict[str, str] = {}
                for raw in reply:
                    line = raw.decode().rstrip("\r\n")
                    if line:
                        name, _, value = line.partition(": ")
                        fields[name] = value
                        continue
                    if "data" in fields:
                        last = fields.get("id", last)
                        kind = fields.get("event", "message")
                        yield kind, json.loads(fields["data"])
                        if kind == "finished":
                            return
                    fields = {}
        except urllib.error.HTTPError as exc:
            raise RsirError(f"{url}/runs/{run_id}/events: {exc.code} {exc.read().decode(errors='replace')[:2000]}") \
                from None
        except OSError:  # the connection dropped: go on after the last event seen, if the orchestrator runs
            check()
            time.sleep(1.0)


def describe(kind: str, data: dict[str, Any]) -> str | None:
    """One terminal line per event worth a line."""
    if kind == "stage":
        return f"  iteration {data['iteration']}: {data['stage']}"
    if kind == "resumed":
        if data.get("retry"):
            return f"  retrying {data['stage']} (iteration {data['iteration']}) after an outage"
        return f"  resumed at {data['stage']}, iteration {data['iteration']}, where the stack had stopped"
    if kind == "epoch":
        valid = (data.get("valid") or {}).get("ndcg@20")
        score = "–" if valid is None else f"{valid:.4f}"
        return (f"    {data['role']} epoch {data['epoch']} (at most {data['max_epochs']}): loss {data['loss']:.4f}, "
                f"valid NDCG@20 {score}, best epoch so far {data['best_epoch']}")
    if kind == "shard" and data.get("done"):
        return (f"    shard {data['shard'] + 1} of {data['count']}: {data.get('emitted', 0)} sequences from "
                f"{data.get('rows', 0)} rows")
    if kind == "dataset":
        return (f"    D{data['iteration']}: +{data['added']} generated sequences ({data['duplicates']} duplicates "
                "dropped)")
    if kind == "iteration":
        test = data.get("test", {})
        return "    test " + "  ".join(f"{m} {test[m]:.4f}" for m in ("ndcg@10", "recall@10") if m in test)
    if kind == "finished":
        return f"  {data['status']}" + (f": {data['error']}" if data.get("error") else "")
    return None


def follow(url: str, run_id: str, out: TextIO, since: float, check: Callable[[], None]) -> dict[str, Any]:
    """Print the run's events from ``since`` (earlier ones it had before this stack started are
    skipped), then its test metrics per iteration and what it found."""
    run = request(f"{url}/runs/{run_id}")
    if run["status"] == "queued":
        ahead = [r["id"] for r in request(f"{url}/runs?limit=500") if r["status"] == "running"]
        if ahead:
            out.write(f"  queued behind run {', '.join(ahead)} (one run at a time)\n")
    if run["status"] not in FINAL:
        for kind, data in events(url, run_id, check):
            line = describe(kind, data)
            if line and data.get("time", since) >= since:
                out.write(line + "\n")
                out.flush()
        run = request(f"{url}/runs/{run_id}")
    if run["status"] != "completed":
        raise RsirError(f"run {run_id} {run['status']}: {run.get('error')}")
    for line in summary(run):
        out.write(f"  {line}\n")
    out.flush()
    return dict(run)


def summary(run: dict[str, Any]) -> list[str]:
    """Test metrics per iteration (* marks the one validation chose) and, in words, what that means."""
    lines = []
    for it in run["iterations"]:
        test = it.get("student", {}).get("test", {})
        mark = "*" if it["iteration"] == run.get("selected") else " "
        names = sorted(test, key=lambda m: (m.partition("@")[0], int(m.partition("@")[2] or 0)))  # recall@5 < @10
        lines.append(f"iteration {it['iteration']}{mark} " + "  ".join(f"{m} {test[m]:.4f}" for m in names))
    lines.append("(* = chosen on validation)")
    return [*lines, finding(run)]


def finding(run: dict[str, Any]) -> str:
    """What the run shows, in one sentence: a gain over iteration 0 with its p-value, or none and why."""
    selected, sig = run.get("selected") or 0, run.get("significance")
    if selected == 0:
        return ("found: no gain. The student trained on the real data alone (iteration 0) validated best: training "
                "on self-generated data as well did not raise validation NDCG@20 here, so the run reports that one.")
    if sig is None:
        return f"found: iteration {selected} validated best; no significance test was run (significance = false)."
    metric = "recall@10" if "recall@10" in sig["tests"] else next(iter(sig["tests"]))
    test, name = sig["tests"][metric], metric.replace("recall", "Recall").replace("ndcg", "NDCG")
    if test["p_ttest"] >= SIGNIFICANT:
        verdict = "not significant at 5 %, so no gain beyond noise"
    else:
        verdict = f"a significant {'gain' if test['relative'] > 0 else 'loss'} at 5 %"
    rounds = "one round" if selected == 1 else f"{selected} rounds"
    return (f"found: iteration {selected} ({rounds} of self-generated data) validated best; its test "
            f"{name} is {100 * test['relative']:+.1f} % against iteration 0 (paired t-test over the test users, "
            f"p = {test['p_ttest']:.3g}): {verdict}.")
