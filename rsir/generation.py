"""Fidelity-filtered generation (paper §3.2, Algorithm 1; architecture.md §1), batched.

Every (sequence, attempt) pair is a *row*. All rows of a chunk decode together as one batch that
shrinks as rows stop, each step costing one cached position (``extend``) and one catalogue scoring
per distinct context, however many users' rows share it (``rsir.scoring``). At each step the
one forward pass serves both checks:

1. **fidelity** — the item appended at the previous step is kept only if some target item of the
   user (``remaining``: items of s not yet generated; ``future``: items after the prefix not yet
   generated) ranks ≤ τ over the full catalogue (rank = 1 + items scoring strictly higher);
   otherwise it is dropped and the row stops. τ = ∞ disables the check.
2. **next item** — already generated items are masked; with probability p the pool is the user's
   own items, otherwise the whole catalogue; top-k sampling with a temperature picks inside it
   (k = 1 is greedy). A row stops when its pool is empty or it reaches ``max_len``.

Random draws come from a counter-based hash of (seed, row, step), so results do not depend on how
rows are chunked, sharded or ordered: shards of one run union to exactly the single-process run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial

import numpy as np
import torch
from torch import Tensor

from rsir.config import GenerationConfig
from rsir.datasets import Ragged, SequenceDataset
from rsir.dedup import first_new
from rsir.errors import ConfigError
from rsir.models import SequentialRecommender
from rsir.parallel import one_intra_op_thread, ordered_streams
from rsir.scoring import CatalogueScorer, sample, score_block, score_contexts

_POOL, _PICK, _PREFIX = 0, 1, 2  # random streams


def uniform(seed: int, rows: np.ndarray, step: int, stream: int) -> np.ndarray:
    """Deterministic uniforms in [0, 1) for (seed, row, step, stream): a splitmix64 hash."""

    def mix(z: np.ndarray) -> np.ndarray:
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))

    with np.errstate(over="ignore"):
        z = mix(np.full(len(rows), seed, dtype=np.uint64))
        z = mix(z ^ rows.astype(np.uint64))
        z = mix(z ^ np.uint64(step * 4 + stream))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


@dataclass
class GenerationStats:
    """Running counts; ``accepted_steps`` counts generated items that passed the fidelity check."""

    rows: int = 0
    accepted_steps: int = 0
    stopped_fidelity: int = 0
    stopped_empty_pool: int = 0
    stopped_length: int = 0
    emitted: int = 0
    too_short: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def __add__(self, other: GenerationStats) -> GenerationStats:
        return GenerationStats(**{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)})


@dataclass(frozen=True)
class GeneratedBatch:
    """Sequences that finished at one step; ``row_ids`` = source index × m + attempt."""

    row_ids: np.ndarray
    sequences: list[np.ndarray]
    stats: GenerationStats = field(compare=False)


def source_sequences(dataset: SequenceDataset, config: GenerationConfig, max_len: int) -> tuple[Ragged, np.ndarray]:
    """The sequences generation starts from (real users' training views unless ``sources='all'``)
    and their dataset indices; rows shorter than 2 items are skipped (nothing to aim at)."""
    train, synthetic = dataset.training(max_len)
    keep = train.lengths >= 2
    if config.sources == "real":
        keep &= ~synthetic
    index = np.flatnonzero(keep)
    return train.take(index), index


def _regroup(keys: Tensor, width: int) -> tuple[Tensor, Tensor, Tensor]:
    """Distinct (group, member) pairs from ``keys`` = group × width + member, sorted: returns the
    groups and members [u] of the distinct pairs and each key's index among them."""
    unique, inverse = torch.unique(keys, return_inverse=True)
    return unique // width, unique % width, inverse


@torch.no_grad()
def _generate_chunk(model: SequentialRecommender, score: CatalogueScorer, src: Ragged,
                    src_index: np.ndarray, cfg: GenerationConfig, stats: GenerationStats, device: torch.device,
                    should_stop: Callable[[], bool] | None) -> Iterator[GeneratedBatch]:
    """Decode every (sequence, attempt) row of a chunk.

    Three levels share work exactly (same context, same scores): a *context* is a distinct
    item sequence, decoded and scored over the catalogue once (users with the same first item
    start from one context, and greedy picks from the catalogue keep them together); a *node*
    is a user's source on a context, which has its own fidelity targets and own-item pool; a
    *row* is one attempt on a node, which differs only in its random draws.
    """
    m, max_len, vocab = cfg.m, cfg.max_len, model.num_items + 1
    row_ids = (src_index[:, None] * m + np.arange(m)).ravel()  # [R]
    sources = torch.from_numpy(src.padded()[0]).to(device)  # [S, Ls]
    row_src = torch.arange(len(src), device=device).repeat_interleave(m)  # [R]
    src_len = sources.gt(0).sum(1)[row_src]
    if cfg.prefix == "first":
        row_prefix = torch.ones_like(row_src)
    else:
        u = torch.from_numpy(uniform(cfg.seed, row_ids, 0, _PREFIX)).to(device)
        row_prefix = 1 + (u * (src_len - 1).double()).long().clamp(max=src_len - 2)
    row_prefix = row_prefix.clamp(max=max_len)
    # nodes: distinct (source, prefix length); contexts: distinct prefixes; nodes sorted by context
    node_src, prefix_len, row_node = _regroup(row_src * (max_len + 1) + row_prefix, max_len + 1)
    width = int(prefix_len.max())
    prefixes = torch.where(torch.arange(width, device=device) < prefix_len[:, None], sources[node_src, :width], 0)
    contexts, node_ctx = torch.unique(prefixes, dim=0, return_inverse=True)
    order = torch.argsort(node_ctx, stable=True)
    node_src, prefix_len, node_ctx = node_src[order], prefix_len[order], node_ctx[order]
    row_node = torch.argsort(order)[row_node]
    ctx_len = contexts.gt(0).sum(1)  # items per context (a prefix holds no padding)
    items = torch.zeros(len(contexts), max_len, dtype=torch.long, device=device)  # [c, T]
    items[:, :width] = contexts
    hidden, cache = model.prefill(contexts, ctx_len, capacity=min(max_len, width + 4))
    pending = False  # after the first step every context ends with a provisional item
    ids = torch.from_numpy(row_ids).to(device)
    stats.rows += len(row_ids)
    check = math.isfinite(cfg.tau)
    src_pos = torch.arange(sources.shape[1], device=device)[None, :]
    step = 0
    while len(ids):
        step_ids = ids.cpu().numpy()
        use_own = torch.from_numpy(uniform(cfg.seed, step_ids, step, _POOL) < cfg.p).to(device)
        pick_u = torch.from_numpy(uniform(cfg.seed, step_ids, step, _PICK)).to(device)
        row_ctx = node_ctx[row_node]
        need_catalogue = torch.zeros(len(items), dtype=torch.bool, device=device).index_fill_(
            0, row_ctx[~use_own], True)
        held = items[:, : int(ctx_len.max())]  # [c, T'] the columns in use
        source = sources[node_src]  # [n, Ls]
        available = (source > 0) & ~(source[:, :, None] == held[node_ctx][:, None, :]).any(-1)  # [n, Ls]
        target = None
        if check and pending:  # items of s not generated so far (the provisional item included)
            target = available & (src_pos >= prefix_len[:, None]) if cfg.target == "future" else available
        fail, own_raw, cat_values, cat_items = score_contexts(score, hidden, held, need_catalogue, node_ctx,
                                                           source, target, cfg.tau, cfg.top_k)
        lengths = ctx_len[node_ctx] - int(pending) * fail.long()  # accepted items per node
        at_max = ~fail & (lengths >= max_len)
        # next item per row: top-k inside the user's own items (probability p) or the whole catalogue
        own_values, own_cols = own_raw.masked_fill(~available, float("-inf")).topk(
            min(cfg.top_k, source.shape[1]), dim=1)
        own_item, own_ok = sample(own_values[row_node], source.gather(1, own_cols)[row_node], pick_u,
                                   cfg.temperature)
        any_item, any_ok = sample(cat_values[row_ctx], cat_items[row_ctx], pick_u, cfg.temperature)
        item = torch.where(use_own, own_item, any_item)
        row_fail, row_max = fail[row_node], at_max[row_node]
        empty = ~row_fail & ~row_max & ~torch.where(use_own, own_ok, any_ok)
        if pending:
            stats.accepted_steps += int((~row_fail).sum())
        stats.stopped_fidelity += int(row_fail.sum())
        stats.stopped_length += int(row_max.sum())
        stats.stopped_empty_pool += int(empty.sum())
        done = row_fail | row_max | empty
        if done.any():
            finished = row_node[done]
            yield _emit(ids[done], items[node_ctx[finished]], lengths[finished], prefix_len[finished], cfg, stats)
        if (should_stop is not None and should_stop()) or done.all():
            return
        # survivors regroup: contexts by (parent context, item), nodes by (new context, parent node)
        keep = ~done
        ids, row_node, item = ids[keep], row_node[keep], item[keep]
        parent_ctx, new_item, row_ctx = _regroup(row_ctx[keep] * vocab + item, vocab)
        node_ctx, parent_node, row_node = _regroup(row_ctx * len(node_src) + row_node, len(node_src))
        node_src, prefix_len = node_src[parent_node], prefix_len[parent_node]
        items, ctx_len, cache = items[parent_ctx], ctx_len[parent_ctx], cache.select(parent_ctx)
        items[torch.arange(len(parent_ctx), device=device), ctx_len] = new_item
        ctx_len = ctx_len + 1
        if int(cache.lengths.max()) >= cache.capacity:
            cache.grow(min(max_len, 2 * cache.capacity))
        hidden = model.extend(cache, new_item)
        pending = True
        step += 1


def _emit(ids: Tensor, generated: Tensor, lengths: Tensor, prefix_len: Tensor, cfg: GenerationConfig,
          stats: GenerationStats) -> GeneratedBatch:
    keep = (lengths >= cfg.min_len) & (lengths > prefix_len)  # at least one generated item
    stats.too_short += int((~keep).sum())
    stats.emitted += int(keep.sum())
    order = torch.argsort(ids[keep])
    gen = generated[keep][order].cpu().numpy()
    n = lengths[keep][order].cpu().numpy()
    return GeneratedBatch(ids[keep][order].cpu().numpy(), [gen[i, : n[i]].copy() for i in range(len(n))],
                          GenerationStats(**stats.to_dict()))


def generate(model: SequentialRecommender, dataset: SequenceDataset, config: GenerationConfig, *,
             shard: tuple[int, int] = (0, 1), device: torch.device | str = "cpu",
             should_stop: Callable[[], bool] | None = None, workers: int | None = None) -> Iterator[GeneratedBatch]:
    """Yield accepted sequences as they finish, with running statistics.

    ``shard = (index, count)`` takes the source sequences whose position is ≡ index (mod count);
    the union over all shards equals the unsharded run. ``workers`` chunks decode at once on the
    CPU (default: torch's thread count), each on one intra-op thread, and ``config.decode_rows`` is
    split between them; a step's ops are too small to scale across threads, chunks are not.
    """
    index, count = shard
    if not 0 <= index < count:
        raise ConfigError(f"shard index {index} outside [0, {count})")
    if config.max_len > model.config.max_len:
        raise ConfigError(f"max_len {config.max_len} exceeds the model's {model.config.max_len}")
    device = torch.device(device)
    workers = torch.get_num_threads() if workers is None else workers
    if not 1 <= workers <= 1024:
        raise ConfigError(f"workers must be in [1, 1024], got {workers}")
    if device.type != "cpu":
        workers = 1  # one stream keeps an accelerator busy
    model = model.to(device).eval()
    src, src_index = source_sequences(dataset, config, model.config.max_len)
    mine = np.flatnonzero(np.arange(len(src_index)) % count == index)
    # users who start alike share contexts: order them by their first two items (the output does
    # not depend on the order, since every random draw is keyed by the row id)
    starts = src.values[src.offsets[mine][:, None] + np.arange(2)]
    mine = mine[np.lexsort((starts[:, 1], starts[:, 0]))]
    most = max(1, config.decode_rows // (config.m * workers))  # sources per chunk
    with one_intra_op_thread() if workers > 1 else nullcontext():  # timed the way the chunks run
        score = CatalogueScorer.fastest(model, score_block(model.num_items))  # shared by every chunk

    def decode(part: np.ndarray) -> Iterator[GeneratedBatch]:  # batches carry the chunk's own statistics
        sub = src.take(part)
        return _generate_chunk(model, score, sub, src_index[part], config, GenerationStats(), device, should_stop)

    totals = GenerationStats()
    # equal chunks: a short last chunk would leave a worker idle while another finishes a long one
    parts = np.array_split(mine, max(1, -(-len(mine) // most)))
    for batches in ordered_streams([partial(decode, part) for part in parts], workers):
        last = GenerationStats()
        for batch in batches:
            last = batch.stats
            yield replace(batch, stats=totals + batch.stats)
        totals = totals + last
        if should_stop is not None and should_stop():
            return


def merge_generated(dataset: SequenceDataset, batches: Iterable[GeneratedBatch],
                    dedup: bool = True, name: str | None = None) -> tuple[SequenceDataset, dict[str, int]]:
    """D_{k+1} = D_k ∪ D': order by row id (so shards merge deterministically), drop duplicates of
    each other and of D_k's sequences and training views (``rsir.dedup``, exact, linear), and append
    the rest as synthetic users."""
    ids, sequences = [], []
    for batch in batches:
        ids.append(batch.row_ids)
        sequences.extend(batch.sequences)
    order = np.argsort(np.concatenate(ids), kind="stable") if ids else np.zeros(0, dtype=np.int64)
    generated = Ragged.from_list(sequences).take(order)
    del sequences
    keep = np.ones(len(generated), dtype=bool)
    if dedup:
        real = np.arange(len(dataset)) < dataset.num_real  # training views: real rows without their last 2
        keep = first_new(dataset.sequences, [0, np.where(real, 2, 0)], generated)
    kept = generated if keep.all() else generated.take(np.flatnonzero(keep))
    merged = dataset.with_synthetic(kept, name=name)
    return merged, {"generated": len(generated), "duplicates": int((~keep).sum()), "added": len(kept)}
