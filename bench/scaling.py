"""How time and memory grow with the data: every stage of a run at 1×, 10× and 100× beauty.

Usage: ``python bench/scaling.py [--scales 1 10 100] [--label after] [--stages convert ...]``.

For each scale a seeded log shaped like beauty (``bench/scaling_data.py``: 22k users, 12k items,
0.2M interactions at 1×) is written under ``bench/cache/scaling/``; then each stage runs in a process
of its own at one torch thread (``bench/scaling_stages.py``) and reports wall time, CPU time and
peak resident set. A watchdog kills a stage whose resident set passes ``--memory-mb`` and records
it. Stages too long to run whole at every scale are measured on part of the work and extrapolated:
training on ``--train-steps`` steps (× steps per epoch), evaluation and generation on a seeded sample
of users (× users); each row says so (``full_epoch``, ``users_ranked``, ``sources``).

Writes ``bench/results/scaling.json`` (runs under ``--label``, so that a before and an after run sit
side by side) and ``bench/results/scaling.png``: log-log CPU time against interactions per stage with
the fitted growth exponent, and the scoring stages' CPU time per user against catalogue size. CPU
time, because on a shared machine wall time says more about the neighbours than about the stage.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "scaling.json"
STAGES = ("convert", "version", "train", "evaluate", "generate", "merge", "upload")
WHOLE = {"train": "epoch_seconds", "evaluate": "pass_seconds", "generate": "pass_seconds"}  # else "seconds"
PER_USER = {"evaluate": "user_seconds", "generate": "source_seconds"}  # scoring: also against items


def run_child(stage: str, scale: float, cache: Path, opts: dict[str, Any], memory_mb: int,
              timeout: float) -> dict[str, Any]:
    """One stage in a fresh process; killed (and recorded so) past ``memory_mb`` resident or ``timeout``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, str(HERE / "scaling.py"), "--child", stage, "--scale", str(scale), "--cache",
           str(cache), "--opts", json.dumps(opts)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    start, killed = time.monotonic(), None
    while proc.poll() is None:
        if _rss_mb(proc.pid) > memory_mb:
            killed = f"killed: resident set over {memory_mb} MB"
        elif time.monotonic() - start > timeout:
            killed = f"killed: over {timeout:.0f} s"
        if killed:
            proc.kill()
            break
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    if killed or proc.returncode:
        return {"failed": killed or f"exit {proc.returncode}: {stderr.strip().splitlines()[-1:]}"}
    out = json.loads(stdout.strip().splitlines()[-1])
    switched = [line for line in stderr.splitlines() if "sampled softmax" in line]
    if switched:
        out["log"] = switched[0]
    return out


def _rss_mb(pid: int) -> float:
    """Resident set of a process and its children (the upload stage's orchestrator), MB."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        except OSError:
            pass
    return total


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = [int(p) for p in f.read().split()]
    except OSError:
        return []
    return kids + [g for k in kids for g in _children(k)]


def exponent(x: list[float], y: list[float]) -> float | None:
    """Least-squares slope of log y against log x (None with fewer than two points)."""
    if len(x) < 2:
        return None
    return float(np.polyfit(np.log(x), np.log(y), 1)[0])


def whole(stage: str, result: dict[str, Any], cpu: bool = True) -> float:
    """The stage's seconds for the whole data (extrapolated where a part was timed): CPU seconds, which a
    machine shared with other work inflates far less than wall seconds, or wall seconds."""
    seconds = result[WHOLE.get(stage, "seconds")]
    return seconds * result["cpu_seconds"] / result["seconds"] if cpu else seconds


def fits(rows: dict[str, Any]) -> dict[str, Any]:
    """Per stage: growth exponents against interactions of the whole stage's CPU and wall time and of
    its peak memory, and for the scoring stages of CPU time per user against items."""
    out: dict[str, Any] = {}
    for stage in STAGES:
        points = [(r["data"], r[stage]) for r in rows.values() if "seconds" in r.get(stage, {})]
        if not points:
            continue
        inter = [d["interactions"] for d, _ in points]
        fit = {"cpu": exponent(inter, [whole(stage, s) for _, s in points]),
               "wall": exponent(inter, [whole(stage, s, cpu=False) for _, s in points]),
               "peak_memory": exponent(inter, [s["peak_mb"] for _, s in points])}
        if stage in PER_USER:
            fit["cpu_per_user_vs_items"] = exponent([d["items"] for d, _ in points],
                                                    [s[PER_USER[stage]] * s["cpu_seconds"] / s["seconds"]
                                                     for _, s in points])
        out[stage] = fit
    return out


def table(results: dict[str, Any]) -> str:
    """A markdown table: per stage and run, CPU seconds / peak MB at each scale and the exponents."""
    runs = results["runs"]
    scales = sorted({k for run in runs.values() for k in run["scales"]}, key=lambda k: float(k[:-1]))
    lines = ["| stage | run | " + " | ".join(f"{k}: CPU s / peak MB" for k in scales) + " | exponent CPU (wall) | "
             "exponent memory |", "|---" * (len(scales) + 4) + "|"]
    for stage in STAGES:
        for label, run in sorted(runs.items()):
            cells = []
            for k in scales:
                r = run["scales"].get(k, {}).get(stage)
                cells.append("–" if r is None else "killed" if "failed" in r else "skipped" if "skipped" in r
                             else f"{whole(stage, r):,.1f} / {r['peak_mb']:,.0f}")
            if all(c == "–" for c in cells):
                continue
            fit = run["fits"].get(stage, {})
            number = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
            lines.append(f"| {stage} | {label} | " + " | ".join(cells) + f" | {number(fit.get('cpu'))} "
                         f"({number(fit.get('wall'))}) | {number(fit.get('peak_memory'))} |")
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted(results["runs"])
    styles = dict(zip(labels, ("--", "-", ":", "-."), strict=False))
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    for ax, stage in zip(axes.flat, STAGES, strict=False):
        for label in labels:
            rows = results["runs"][label]["scales"]
            pts = [(r["data"]["interactions"], whole(stage, r[stage])) for r in rows.values()
                   if "seconds" in r.get(stage, {})]
            if pts:
                k = results["runs"][label]["fits"].get(stage, {}).get("cpu")
                ax.loglog(*zip(*sorted(pts), strict=True), styles.get(label, "-"), marker="o",
                          label=f"{label}: exponent {k:.2f}" if k is not None else label)
        ax.set(title=stage, xlabel="interactions", ylabel="CPU seconds (whole stage)")
        if ax.lines:
            ax.legend(fontsize=7)
    ax = axes.flat[-1]
    for label in labels:
        run = results["runs"][label]
        for stage, key in PER_USER.items():
            pts = [(r["data"]["items"], r[stage][key] * r[stage]["cpu_seconds"] / r[stage]["seconds"])
                   for r in run["scales"].values() if "seconds" in r.get(stage, {})]
            k = run["fits"].get(stage, {}).get("cpu_per_user_vs_items")
            if pts:
                ax.loglog(*zip(*sorted(pts), strict=True), styles.get(label, "-"), marker="s",
                          label=f"{label} {stage}: {k:.2f}" if k is not None else f"{label} {stage}")
    ax.set(title="scoring: CPU seconds per user vs items", xlabel="items", ylabel="CPU seconds per user")
    if ax.lines:
        ax.legend(fontsize=7)
    fig.suptitle("bench/scaling.py: CPU time against data size, 1 torch thread (exponent = log-log slope)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", nargs="+", type=float, default=[1, 10, 100])
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--label", default="after", help="the run's key in the JSON (e.g. before, after)")
    parser.add_argument("--cache", type=Path, default=HERE / "cache" / "scaling")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--memory-mb", type=int, default=10_000, help="kill a stage whose resident set passes it")
    parser.add_argument("--timeout", type=float, default=1800, help="kill a stage that runs longer (seconds)")
    parser.add_argument("--train-steps", type=int, default=30, help="training steps measured per scale")
    parser.add_argument("--eval-users", type=int, default=4096, help="users ranked per scale")
    parser.add_argument("--eval-rows", type=int, default=0, help="users scored at once (0: TrainConfig's)")
    parser.add_argument("--gen-users", type=int, default=2000, help="generation's source users per scale")
    parser.add_argument("--replot", action="store_true", help="refit and replot the recorded runs, measure nothing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--opts", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replot:
        results = json.loads(args.out.read_text())
        for run in results["runs"].values():
            run["fits"] = fits(run["scales"])
        _write(results, args.out)
        plot(results, args.out.with_suffix(".png"))
        print(table(results))
        return
    if args.child:
        from scaling_stages import child

        child(args.child, args.cache, args.scale, json.loads(args.opts))
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = {"memory_mb": args.memory_mb, "train_steps": args.train_steps, "eval_users": args.eval_users,
            "eval_rows": args.eval_rows, "gen_users": args.gen_users, "port": port}
    results = json.loads(args.out.read_text()) if args.out.exists() else {"runs": {}}
    scales: dict[str, Any] = {}
    results["runs"][args.label] = run = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                         "settings": opts, "scales": scales}
    for scale in args.scales:
        cache = args.cache / f"{scale:g}x"
        cache.mkdir(parents=True, exist_ok=True)
        scales[f"{scale:g}x"] = row = {"data": run_child("data", scale, cache, opts, args.memory_mb, args.timeout)}
        print(f"{scale:g}x: {row['data']}", flush=True)
        for stage in args.stages:
            row[stage] = run_child(stage, scale, cache, opts, args.memory_mb, args.timeout)
            r = row[stage]
            summary = r.get("failed") or r.get("skipped") or (
                f"{whole(stage, r, cpu=False):.2f} s, cpu {whole(stage, r):.2f} s"
                f"{' (extrapolated)' if stage in WHOLE else ''}, peak {r['peak_mb']:.0f} MB")
            print(f"  {stage}: {summary}", flush=True)
        run["fits"] = fits(scales)
        _write(results, args.out)
    from rsir.resources import machine

    run["machine"] = {**machine(), "torch_threads": 1}
    _write(results, args.out)
    plot(results, args.out.with_suffix(".png"))
    print(json.dumps(run["fits"], indent=1))


def _write(results: dict[str, Any], path: Path) -> None:
    from rsir import jsonio  # strict JSON (no bare NaN or Infinity), as every record under bench/results

    path.parent.mkdir(parents=True, exist_ok=True)
    jsonio.write(path, results)


if __name__ == "__main__":
    main()
