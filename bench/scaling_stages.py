"""The stages bench/scaling.py measures, each run in a process of its own (``python bench/scaling.py
--child STAGE``), so that the peak resident set a child reports is its stage's.

Every stage reads what the earlier ones left in the scale's cache folder (the log, the stored version,
the trained model, the generation sample's shape) and returns its measurements: ``seconds`` and
``cpu_seconds`` of the timed part only (setup excluded), and whatever else says what was timed.
"""

from __future__ import annotations

import json
import math
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from rsir.datasets import EvalSplit, Ragged, SequenceDataset

MODEL: dict[str, Any] = {"name": "sasrec", "dim": 64, "layers": 2, "heads": 2, "max_len": 50, "dropout": 0.2}
Result = dict[str, Any]


@contextmanager
def timed(out: Result) -> Iterator[None]:
    """Wall and CPU seconds (all threads) of the block, and the peak resident set before it, into ``out``."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["setup_peak_mb"] = usage.ru_maxrss / 1024
    start, cpu = time.perf_counter(), usage.ru_utime + usage.ru_stime
    yield
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["seconds"] = time.perf_counter() - start
    out["cpu_seconds"] = usage.ru_utime + usage.ru_stime - cpu


def take(rows: Ragged, index: np.ndarray) -> Ragged:
    """Rows ``index`` of ``rows`` (the bench's own copy: it also runs against trees without ``Ragged.take``)."""
    lengths = rows.lengths[index]
    offsets = np.zeros(len(index) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return Ragged(offsets, rows.values[np.repeat(rows.offsets[index] - offsets[:-1], lengths) + np.arange(offsets[-1])])


def sample(count: int, most: int, seed: int = 0) -> np.ndarray:
    """A seeded, sorted sample of at most ``most`` of ``range(count)``."""
    if count <= most:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, most, replace=False))


def data(cache: Path, scale: float, opts: Result) -> Result:
    """Setup, not a measured stage: the log (CSV) and the same data as a stored version (kept in the
    cache folder: the data of a scale is the same every time)."""
    from scaling_data import beauty_like, write_log

    record = cache / "data.json"
    if record.exists():
        return dict(json.loads(record.read_text()))
    dataset, stamps = beauty_like(scale)
    write_log(dataset, stamps, cache / "log.csv")
    dataset.save(cache / "dataset.npz")
    out = {"users": len(dataset), "items": dataset.num_items, "interactions": len(dataset.items),
           "log_mb": (cache / "log.csv").stat().st_size / 2**20, "version": dataset.version}
    record.write_text(json.dumps(out))
    return out


def convert(cache: Path, scale: float, opts: Result) -> Result:
    """Text log → dataset: chunked parse, 5-core filter, chronological grouping, dense ids."""
    out: Result = {}
    with timed(out):
        dataset = SequenceDataset.read(cache / "log.csv", k_core=5)
        version = dataset.version
    out["same_as_written"] = version == SequenceDataset.load(cache / "dataset.npz").version
    return out


def version(cache: Path, scale: float, opts: Result) -> Result:
    """Content hash and the stored ``.npz`` (written as a service stores a new version)."""
    dataset = SequenceDataset.load(cache / "dataset.npz")
    fresh = SequenceDataset(dataset.num_items, dataset.users, dataset.offsets, dataset.items, dataset.num_real)
    out: Result = {}
    with timed(out):
        fresh.version  # noqa: B018  (the hash is the work)
        fresh.save(cache / "stored.npz")
    out["stored_mb"] = (cache / "stored.npz").stat().st_size / 2**20
    (cache / "stored.npz").unlink()
    return out


def train(cache: Path, scale: float, opts: Result) -> Result:
    """Training steps as ``rsir.training`` takes them (packed random batches, the configured loss, its
    optimisers), without validation; the epoch's time is the measured steps' mean × its steps."""
    import torch

    from rsir.batching import packed_batch, random_batches
    from rsir.config import ModelConfig, TrainConfig
    from rsir.losses import next_item_loss
    from rsir.models import build_model

    dataset = SequenceDataset.load(cache / "dataset.npz")
    model_config, config = ModelConfig(**MODEL), TrainConfig(device="cpu", precision="fp32")
    loss = _resolved_loss(config, dataset.num_items, model_config.max_len)
    logits_mb = config.batch_size * model_config.max_len * (dataset.num_items + 1) * 4 / 2**20
    if loss == "ce" and logits_mb > opts["memory_mb"]:
        return {"skipped": f"the full softmax's logits of a worst-case batch need {logits_mb:,.0f} MB, over "
                           f"this run's {opts['memory_mb']:,} MB limit", "loss": loss}
    torch.manual_seed(0)
    model = build_model(model_config, dataset.num_items)
    sequences, _ = dataset.training(model_config.max_len)
    rows = np.flatnonzero(sequences.lengths >= 2)
    weights = np.ones(len(rows), dtype=np.float32)
    epoch_steps = math.ceil(len(rows) / config.batch_size)
    steps = min(epoch_steps, opts["train_steps"])
    out: Result = {"loss": loss, "epoch_steps": epoch_steps, "steps": steps, "full_epoch": steps == epoch_steps}
    batches = random_batches(len(rows), config.batch_size, np.random.default_rng(0))
    model.train()
    with _optimizers(model, config) as optimizers, timed(out):
        for _, index in zip(range(steps), batches, strict=False):
            batch = packed_batch(sequences, rows[index], model_config.max_len)
            tensors = {k: torch.from_numpy(v) for k, v in vars(batch).items()}
            value = next_item_loss(model, tensors, torch.from_numpy(weights[index]), config)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            value.backward()
            for optimizer in optimizers:
                optimizer.step()
    out["optimizer"] = " + ".join(type(o).__name__ for o in optimizers)
    out["step_seconds"] = out["seconds"] / steps
    out["epoch_seconds"] = out["step_seconds"] * epoch_steps
    out["interactions_per_second"] = len(dataset.items) / out["epoch_seconds"]
    torch.save(model.state_dict(), cache / "model.pt")
    return out


def _optimizers(model: Any, config: Any) -> AbstractContextManager[list[Any]]:
    """The library's optimisers for this model and config (fused Adam before ``rsir.optim`` existed)."""
    import torch

    try:
        from rsir.optim import adam
    except ImportError:
        return nullcontext([torch.optim.Adam(model.parameters(), lr=config.lr, fused=True)])
    return adam(model, config, None)


def _resolved_loss(config: Any, num_items: int, max_len: int) -> str:
    """The loss a training run would use (``auto`` resolved where the library resolves it)."""
    from rsir import losses

    resolve: Callable[..., str] | None = getattr(losses, "resolve_loss", None)
    return config.loss if resolve is None else resolve(config, num_items, max_len)


def _model(cache: Path, num_items: int) -> Any:
    import torch

    from rsir.config import ModelConfig
    from rsir.models import build_model

    model = build_model(ModelConfig(**MODEL), num_items)
    if (cache / "model.pt").exists():
        model.load_state_dict(torch.load(cache / "model.pt", weights_only=True))
    return model.eval()


def evaluate(cache: Path, scale: float, opts: Result) -> Result:
    """Full-ranking test evaluation (history masked) of a seeded sample of users; the whole pass is
    the sample's time per user × users."""
    from rsir import scoring
    from rsir.config import TrainConfig
    from rsir.evaluation import rank_targets

    dataset = SequenceDataset.load(cache / "dataset.npz")
    model = _model(cache, dataset.num_items)
    view = dataset.evaluation("test", model.config.max_len)
    users = sample(dataset.num_real, opts["eval_users"])
    split = EvalSplit(take(view.inputs, users), take(view.history, users), view.targets[users])
    rows = opts.get("eval_rows") or TrainConfig().eval_batch_size
    out: Result = {"users_ranked": len(users)}
    cap: Callable[[int, int], int] | None = getattr(scoring, "rank_block", None)
    if cap is not None:  # what evaluation ranks at once where it caps its block by the catalogue
        rows, out["rows_capped_by"] = cap(dataset.num_items, rows), "rsir.scoring.rank_block"
    out["batch_rows"] = rows
    with timed(out):
        ranks = rank_targets(model, split, batch_size=rows)
    out["user_seconds"] = out["seconds"] / len(users)
    out["pass_seconds"] = out["user_seconds"] * dataset.num_real
    out["recall@10"] = float((ranks < 10).mean())
    return out


def generate(cache: Path, scale: float, opts: Result) -> Result:
    """One fidelity-filtered generation pass (default settings, τ = 20, m = 5) from a seeded sample of
    real users on one worker; the whole pass is the sample's time per source × users."""
    from rsir.config import GenerationConfig
    from rsir.generation import generate as run

    dataset = SequenceDataset.load(cache / "dataset.npz")
    model = _model(cache, dataset.num_items)
    users = sample(dataset.num_real, opts["gen_users"])
    rows = take(dataset.sequences, users)
    sub = SequenceDataset(dataset.num_items, dataset.users[users], rows.offsets, rows.values, len(users))
    out: Result = {"sources": len(users)}
    lengths: list[int] = []
    stats = None
    with timed(out):
        for batch in run(model, sub, GenerationConfig(), workers=1):
            lengths.extend(len(s) for s in batch.sequences)
            stats = batch.stats
    assert stats is not None, "generation emitted no batch"
    out.update(rows=stats.rows, emitted=stats.emitted, accepted_steps=stats.accepted_steps)
    out["source_seconds"] = out["seconds"] / len(users)
    out["pass_seconds"] = out["source_seconds"] * dataset.num_real
    out["mean_length"] = float(np.mean(lengths)) if lengths else 0.0
    return out


def merge(cache: Path, scale: float, opts: Result) -> Result:
    """D ∪ D' with de-duplication, for one generated sequence per real user (3 items and a geometric
    number more, mean 5; 1 % of them copies of real training sequences, the rest random), whatever
    the model: generating them all would take the whole generation pass."""
    from rsir.generation import GeneratedBatch, GenerationStats, merge_generated

    dataset = SequenceDataset.load(cache / "dataset.npz")
    rng = np.random.default_rng(0)
    count = dataset.num_real
    lengths = 2 + rng.geometric(1 / 3, count)
    values = rng.integers(1, dataset.num_items + 1, int(lengths.sum()))
    sequences = np.split(values, np.cumsum(lengths)[:-1])
    train, _ = dataset.training(50)
    for i in rng.choice(count, count // 100, replace=False):
        sequences[i] = train.row(int(rng.integers(len(train)))).copy()
    row_ids = rng.permutation(count) * 5  # one attempt per source, in shuffled batches as shards finish
    batches = [GeneratedBatch(row_ids[lo:lo + 4096], sequences[lo:lo + 4096], GenerationStats())
               for lo in range(0, count, 4096)]
    del values
    out: Result = {"generated": count}
    with timed(out):
        merged, counts = merge_generated(dataset, batches)
    out.update(counts, merged_interactions=len(merged.items))
    return out


def upload(cache: Path, scale: float, opts: Result) -> Result:
    from scaling_upload import upload as measure

    return measure(cache, scale, opts)


STAGES: dict[str, Callable[[Path, float, Result], Result]] = {
    "convert": convert, "version": version, "train": train, "evaluate": evaluate, "generate": generate,
    "merge": merge, "upload": upload}


def child(stage: str, cache: Path, scale: float, opts: Result) -> None:
    """Run one stage at one torch thread and print its result as the last line of stdout."""
    if stage in ("train", "evaluate", "generate"):
        import torch

        torch.set_num_threads(1)
    fn = data if stage == "data" else STAGES[stage]
    out = fn(cache, scale, opts)
    out.setdefault("peak_mb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out))
