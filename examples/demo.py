"""``make demo``: the demo in this process, as ``rsir up --demo`` runs it through the services.

Writes the built-in demo data (``rsir.synthetic.demo_dataset``) to ``<out>/demo-data.npz``, runs it
with the ``demo`` recipe (``rsir run``: K iterations, the one that validates best is selected, then a
paired test against iteration 0 on the test users) and says in one sentence what it found.

    python examples/demo.py [--out runs/demo] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rsir.cli import main as rsir
from rsir.synthetic import demo_dataset
from services.stack_runs import DEMO_RECIPE, finding


def demo(out: Path, seed: int) -> int:
    out.mkdir(parents=True, exist_ok=True)
    data = out / "demo-data.npz"
    demo_dataset().save(data)
    rc = rsir(["run", "--data", str(data), "--recipe", DEMO_RECIPE, "--seed", str(seed), "--out", str(out)])
    if rc == 0:
        report = json.loads((out / "report.json").read_text())
        sys.stdout.write(finding(report) + "\n")
    return rc


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.exit(demo(args.out, args.seed))
