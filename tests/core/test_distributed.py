"""Data-parallel training (``rsir.distributed``): two gloo processes on loopback take the same steps
as one process at the same global batch, shard evaluation without changing a rank, and rank 0's
checkpoint loads in the one-process generator."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from rsir.checkpoint import load_checkpoint, save_checkpoint
from rsir.config import GenerationConfig, ModelConfig, TrainConfig
from rsir.data import write_sequences
from rsir.distributed import init_from_env, shutdown
from rsir.evaluation import evaluate
from rsir.generation import generate
from rsir.parallel import torch_threads
from rsir.synthetic import synthetic_dataset
from rsir.training import train

MODEL = ModelConfig(dim=32, heads=2, max_len=20, dropout=0.0)  # dropout masks are drawn per rank
# 301 trainable sequences in batches of 60: the last batch holds one, so one rank's share is empty
TRAIN = TrainConfig(loss="ce", precision="fp32", batch_size=60, max_epochs=3, patience=3, lr=3e-3, seed=0)


def _dataset():
    return synthetic_dataset(num_users=301, num_items=60, num_clusters=4, seed=7)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _replica(rank: int, size: int, port: int, out: str) -> None:
    """One rank: join the group from torchrun's variables, train, rank the test users sharded."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    world = init_from_env("cpu", timeout_s=60)
    assert world is not None and world.size == size
    try:
        data = _dataset()
        result = train(data, MODEL, TRAIN, progress=False)
        ranks = evaluate(result.model, data, "test", batch_size=16, world=world).ranks
        if world.is_main:
            save_checkpoint(Path(out) / "model.pt", result.model, TRAIN, data.version, {"valid": result.valid})
            (Path(out) / "result.pkl").write_bytes(pickle.dumps(
                {"losses": [r.loss for r in result.history], "valid": [r.valid for r in result.history],
                 "ranks": ranks}))
    finally:
        shutdown()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_replica, args=(2, _free_port(), str(out)), nprocs=2, join=True, start_method="spawn")
    return out, pickle.loads((out / "result.pkl").read_bytes())


def test_two_gloo_processes_follow_the_one_process_loss_trajectory(two_ranks):
    data = _dataset()
    with torch_threads(1):
        one = train(data, MODEL, TRAIN, progress=False)
    out, two = two_ranks
    losses = np.array([r.loss for r in one.history])
    assert len(two["losses"]) == len(losses) == TRAIN.max_epochs
    assert np.abs(np.array(two["losses"]) - losses).max() < 1e-4
    model, _ = load_checkpoint(out / "model.pt")
    for name, value in one.model.state_dict().items():
        assert torch.allclose(model.state_dict()[name], value, atol=1e-3), name
    assert [v["ndcg@20"] for v in two["valid"]] == pytest.approx([r.valid["ndcg@20"] for r in one.history],
                                                                 abs=1e-3)


def test_sharded_evaluation_gives_every_users_one_process_rank(two_ranks):
    out, two = two_ranks
    model, _ = load_checkpoint(out / "model.pt")
    data = _dataset()
    assert np.array_equal(two["ranks"], evaluate(model, data, "test", batch_size=16).ranks)


def test_rank_zeros_checkpoint_loads_in_the_one_process_generator(two_ranks):
    out, _ = two_ranks
    model, info = load_checkpoint(out / "model.pt")
    data = _dataset()
    assert info.num_items == data.num_items and info.model_config == MODEL
    batches = list(generate(model, data, GenerationConfig(tau=20, p=0.5, m=2, max_len=20)))
    assert batches and batches[-1].stats.rows > 0


@pytest.mark.slow
def test_rsir_train_nproc_launches_torchrun_and_writes_one_checkpoint(tmp_path):
    data = _dataset()
    write_sequences(tmp_path / "data.txt", data.users, data.sequences.to_list())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "rsir.cli", "train", "--nproc", "2", "--data",
                           str(tmp_path / "data.txt"), "--dim", "16", "--heads", "1", "--max-len", "10",
                           "--epochs", "1", "--out", str(tmp_path / "runs"), "-q"],
                          capture_output=True, text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("wrote ") == 1  # rank 0 alone reports and writes
    report = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    assert report["world_size"] == 2 and report["epochs"] == 1
    model, _ = load_checkpoint(report["checkpoint"])
    assert model.config.dim == 16
