"""One loop, three ways in: ``rsir run``, the local stack (``rsir up`` + ``POST /runs``) and
``bench/rsir_table.py`` run one recipe on one dataset and seed → bench/results/one-loop-*.json.

The three run at once, one thread each, and must produce the same dataset versions and the same
per-iteration test metrics; the JSON also holds them against a recorded ``bench/results/rsir`` row
(``--row``), the number the recipe was chosen by. ``--reuse DIR`` compares the outputs of an earlier
run in DIR (``cli/report.json``, ``bench/*.json``, ``stack-run.json``) without running anything.

    python bench/one_loop.py --dataset beauty --seed 0 --row beauty-sasrec-strong-seed0-rsir+insertion-w0.5-ft
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from rsir import jsonio
from rsir.recipes import recipe_for
from rsir.resources import machine
from services.stack import free_port

HERE = Path(__file__).resolve().parent
TAG = "one-loop"


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def run_all(out: Path, dataset: str, seed: int, recipe: str) -> float:
    """The three paths at once; returns the wall seconds of the slowest."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    rsir = [sys.executable, "-m", "services.cli"]
    start = time.perf_counter()
    cli = subprocess.Popen([*rsir, "run", "--data", dataset, "--recipe", recipe, "--seed", str(seed),
                            "--out", str(out / "cli"), "-q"], env=env)
    bench = subprocess.Popen([sys.executable, str(HERE / "rsir_table.py"), "--datasets", dataset, "--seeds",
                              str(seed), "--recipe", recipe, "--tag", TAG, "--out", str(out / "bench")], env=env)
    port = free_port()
    stack = subprocess.Popen([*rsir, "up", "--port", str(port), "--state-dir", str(out / "stack")], env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                _get(f"{base}/readyz")
                break
            except OSError:
                time.sleep(1)
        created = _post(f"{base}/runs", {"dataset": dataset, "recipe": recipe, "seed": seed})
        while (run := _get(f"{base}{created['url']}"))["status"] in ("queued", "running"):
            time.sleep(10)
        jsonio.write(out / "stack-run.json", run)
        for name, proc in (("rsir run", cli), ("rsir_table.py", bench)):
            if proc.wait() != 0:
                raise SystemExit(f"{name} failed with exit status {proc.returncode}")
    finally:
        stack.send_signal(signal.SIGINT)
        stack.wait(60)
    return time.perf_counter() - start


def compare(out: Path, recorded: dict[str, Any] | None) -> dict[str, Any]:
    """Dataset versions and test metrics per path and iteration, and whether they agree."""
    cli = jsonio.loads((out / "cli" / "report.json").read_text())
    stack = jsonio.loads((out / "stack-run.json").read_text())
    rows = {p.stem: jsonio.loads(p.read_text()) for p in (out / "bench").glob("*.json")}
    bench = [rows[name] for name in sorted(rows) if "-base-" in name] + \
            [rows[name] for name in sorted(rows) if "-rsir" in name]
    paths = {
        "cli": {"datasets": cli["datasets"], "test": [it["student"]["test"] for it in cli["iterations"]]},
        "stack": {"datasets": stack["datasets"], "test": [it["student"]["test"] for it in stack["iterations"]]},
        "bench": {"datasets": [cli["datasets"][0]] + [r["dataset_version"] for r in bench[1:]],
                  "test": [r["test"] for r in bench]},
    }
    rounded = {name: [{m: round(v, 4) for m, v in t.items()} for t in p["test"]] for name, p in paths.items()}
    result: dict[str, Any] = {
        "paths": paths, "recipe": cli["recipe"], "config": cli["config"],
        "same_datasets": len({json.dumps(p["datasets"]) for p in paths.values()}) == 1,
        "same_test_4_digits": len({json.dumps(r, sort_keys=True) for r in rounded.values()}) == 1,
        "same_test_exact": len({json.dumps(p["test"], sort_keys=True) for p in paths.values()}) == 1,
        "selected": {"cli": cli["selected"], "stack": stack["selected"]},
    }
    if recorded is not None:
        final = {m: round(v, 4) for m, v in recorded["test"].items()}
        result["recorded"] = {"test": recorded["test"],
                              "equal_4_digits": all(r[-1] == final for r in rounded.values())}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="beauty")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", help="default: the dataset's own")
    parser.add_argument("--row", help="a recorded bench/results/rsir row the last iteration should equal")
    parser.add_argument("--reuse", type=Path, help="compare the outputs already in this folder")
    args = parser.parse_args()
    recipe = args.recipe or recipe_for(args.dataset)
    recorded = jsonio.loads((HERE / "results" / "rsir" / f"{args.row}.json").read_text()) if args.row else None
    seconds = None
    if args.reuse is not None:
        out = args.reuse
    else:
        out = Path(tempfile.mkdtemp(prefix="one-loop-"))
        seconds = run_all(out, args.dataset, args.seed, recipe)
    result = {"dataset": args.dataset, "seed": args.seed, "row": args.row, **compare(out, recorded),
              "wall_seconds": seconds, "reused": str(args.reuse) if args.reuse else None, "machine": machine(),
              "date": time.strftime("%Y-%m-%d")}
    path = HERE / "results" / f"one-loop-{args.dataset}-seed{args.seed}.json"
    jsonio.write(path, result)
    print(json.dumps({k: result[k] for k in ("same_datasets", "same_test_4_digits", "same_test_exact")}
                     | ({"recorded": result["recorded"]["equal_4_digits"]} if recorded else {})), flush=True)


if __name__ == "__main__":
    main()
