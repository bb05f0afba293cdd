"""RecBole 1.2.1's side of ``bench/train_speed.py``: its own virtual environment, the benchmark as
an atomic ``.inter`` file, a SASRec config at the shared targets, and a run in a subprocess.

RecBole stays out of the project's environment: it needs numpy < 2 and would pull in ray (used
only by its hyperparameter search), so it lives in a venv of its own, made here on first use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsir import jsonio

TORCH = "torch==2.13.0"  # first and pinned, so that pip keeps the CPU build it finds for it
RECBOLE = "recbole==1.2.1"
# recbole's own requirements, less ray (its hyperparameter search, never imported here)
DEPENDENCIES = ("numpy<2", "pandas<3", "scipy", "tqdm>=4.48.2", "colorlog==4.7.2", "colorama==0.4.4",
                "scikit-learn", "pyyaml", "tensorboard", "thop", "tabulate", "plotly", "texttable", "psutil")
DEFAULT_VENV = Path("~/.cache/rsir-bench/recbole-venv")
RUNNER = Path(__file__).resolve().with_name("train_speed_recbole_run.py")
READY = ".rsir-bench-ready"  # written last, holding the requirements it was made with
FIELDS = ("user_id:token", "item_id:token", "timestamp:float")


class BenchError(RuntimeError):
    """A step of the bench failed; the message says which and what to do."""


def venv_python(venv: Path) -> Path:
    return venv.expanduser() / "bin" / "python"


def venv_ready(venv: Path) -> bool:
    """Whether ``venv`` was completed by :func:`ensure_venv` with the current requirements."""
    marker = venv.expanduser() / READY
    return marker.is_file() and marker.read_text() == _requirements_text()


def _requirements_text() -> str:
    return "\n".join((TORCH, RECBOLE, *DEPENDENCIES)) + "\n"


def ensure_venv(venv: Path, log: Callable[[str], None] = print) -> Path:
    """The venv's python, after creating and filling ``venv`` unless it is ready already.

    Torch goes in first, pinned, so that the later installs never replace it with another build;
    recbole goes in without its declared dependencies (that would bring ray), then those it uses.
    """
    venv = venv.expanduser()
    python = venv_python(venv)
    if venv_ready(venv):
        return python
    log(f"setting up RecBole's venv in {venv} (once)")
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", "-q", TORCH],
             [str(python), "-m", "pip", "install", "-q", "--no-deps", RECBOLE],
             [str(python), "-m", "pip", "install", "-q", TORCH, *DEPENDENCIES]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"setting up RecBole's venv failed at `{' '.join(step[1:])}`:\n"
                             f"{_tail(done.stdout + done.stderr)}")
    (venv / READY).write_text(_requirements_text())
    return python


def sequences_to_inter(source: Path, out_dir: Path, name: str) -> dict[str, int]:
    """Write ``source`` (one user per line: ``user item item ...``, oldest first) as RecBole's atomic
    file ``out_dir/name/name.inter``; returns its users, items and interactions.

    The timestamp is the interaction's line order in the file, so that RecBole's time order (``order:
    TO``) is each user's order in the file and its last two items are validation and test, as ours.
    """
    folder = out_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    users, items, count = 0, set(), 0
    with source.open() as src, (folder / f"{name}.inter").open("w") as out:
        out.write("\t".join(FIELDS) + "\n")
        for number, line in enumerate(src, 1):
            tokens = line.split()
            if not tokens:
                continue
            if len(tokens) < 2 or not all(t.isdigit() for t in tokens):
                raise BenchError(f"{source}:{number}: expected 'user item item ...' as integers, got {line.strip()!r}")
            users += 1
            for item in tokens[1:]:
                out.write(f"{tokens[0]}\t{item}\t{count}\n")
                items.add(item)
                count += 1
    if users == 0:
        raise BenchError(f"{source}: no sequences")
    return {"users": users, "items": len(items), "interactions": count}


def recbole_config(name: str, data_path: Path, *, dim: int, layers: int, heads: int, dropout: float,
                   max_len: int, batch_size: int, lr: float, epochs: int, patience: int, seed: int,
                   eval_batch_size: int, checkpoint_dir: Path) -> dict[str, Any]:
    """RecBole's settings for SASRec at the shared targets.

    RecBole stops once more than ``stopping_step`` validations in a row did not improve; ours stops
    after ``patience`` of them, so ``stopping_step = patience - 1`` stops both at the same epoch.
    """
    return {
        "model": "SASRec", "dataset": name, "data_path": str(data_path), "checkpoint_dir": str(checkpoint_dir),
        "USER_ID_FIELD": "user_id", "ITEM_ID_FIELD": "item_id", "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
        "MAX_ITEM_LIST_LENGTH": max_len, "hidden_size": dim, "inner_size": 4 * dim, "n_layers": layers,
        "n_heads": heads, "hidden_dropout_prob": dropout, "attn_dropout_prob": dropout, "hidden_act": "gelu",
        "loss_type": "CE", "train_neg_sample_args": None,
        "learner": "adam", "learning_rate": lr, "weight_decay": 0.0, "train_batch_size": batch_size,
        "epochs": epochs, "eval_step": 1, "stopping_step": patience - 1, "valid_metric": "NDCG@20",
        "metrics": ["Recall", "NDCG"], "topk": [10, 20], "metric_decimal_place": 8,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "eval_batch_size": eval_batch_size, "seed": seed, "reproducibility": True,
        "device": "cpu", "use_gpu": False, "worker": 0, "show_progress": False,
        "save_dataset": False, "save_dataloaders": False, "log_wandb": False,
    }


def start_recbole(python: Path, config: dict[str, Any], workdir: Path, threads: int) -> subprocess.Popen[bytes]:
    """Start RecBole's run of ``config`` in ``workdir`` (its logs and checkpoint stay there) with
    ``threads`` torch threads; :func:`finish_recbole` waits for it and reads its result."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(jsonio.dumps(config, indent=2))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}  # RecBole's torch.load of its checkpoint predates torch 2.6
    with (workdir / "run.log").open("wb") as log:
        return subprocess.Popen([str(python), str(RUNNER), "config.json", "result.json", str(threads)],
                                cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)


def finish_recbole(process: subprocess.Popen[bytes], workdir: Path) -> dict[str, Any]:
    """Wait for a run from :func:`start_recbole`; its result, or ``BenchError`` with its log's end."""
    if process.wait() != 0 or not (workdir / "result.json").is_file():
        log = (workdir / "run.log").read_text(errors="replace")
        raise BenchError(f"RecBole exited with {process.returncode}; end of {workdir / 'run.log'}:\n{_tail(log)}")
    result: dict[str, Any] = json.loads((workdir / "result.json").read_text())
    return result


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
