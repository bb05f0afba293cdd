"""Fidelity-filtered generation (paper §3.2, Algorithm 1; architecture.md §1), batched.

Every (sequence, attempt) pair is a *row*. All rows of a chunk decode together as one batch that
shrinks as rows stop, each step costing one cached position per row (``extend``). At each step the
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
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import Tensor

from rsir.config import GenerationConfig
from rsir.datasets import Ragged, SequenceDataset
from rsir.errors import ConfigError
from rsir.models import SequentialRecommender

SCORE_BLOCK_ELEMENTS = 1 << 19  # scores held at once (2 MiB): cache-resident, and bounded for any catalogue
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
    lengths = train.lengths[index]
    offsets = np.zeros(len(index) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    gather = np.repeat(train.offsets[index] - offsets[:-1], lengths) + np.arange(offsets[-1])
    return Ragged(offsets, train.values[gather]), index


def _sample(values: Tensor, items: Tensor, u: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Top-k sampling from candidates sorted by score: ``values``/``items`` [b, k] (-inf = empty
    slot), ``u`` [b] uniforms. Returns the picked items [b] and whether the pool was non-empty."""
    choice = torch.zeros(len(values), dtype=torch.long, device=values.device)
    if values.shape[1] > 1:
        probs = torch.softmax(values / temperature, dim=1).nan_to_num(0.0)
        choice = (probs.cumsum(1) <= u[:, None]).sum(1).clamp(max=values.shape[1] - 1)
        # never land on an empty (-inf) slot: fall back to the best candidate
        choice = torch.where(torch.isfinite(values.gather(1, choice[:, None]))[:, 0], choice, 0)
    return items.gather(1, choice[:, None])[:, 0], torch.isfinite(values[:, 0])


def _score_step(model: SequentialRecommender, hidden: Tensor, source: Tensor, generated: Tensor,
                target: Tensor | None, fails_at: Tensor, need_catalogue: Tensor,
                top_k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Everything one step needs from the full-catalogue scores of ``n`` decoding nodes, computed
    in row blocks small enough to stay in cache (the [n, V] matrix never exists at once).

    hidden [n, D]; source [n, Ls] the users' items; generated [n, T]; target [n, Ls] the source
    items that count for fidelity (None: no check); ``fails_at`` [n] the count of better-scored
    items at which a node fails (a node that fails picks nothing); ``need_catalogue`` [n] whether
    any of the node's rows draws from the whole catalogue. Returns ``higher`` [n] (items scoring
    above the node's best target), the catalogue top-k values and items [n, k] (generated items
    masked; -inf where not needed) and the raw scores of the source items [n, Ls].
    """
    n = len(hidden)
    k = min(top_k, model.num_items)
    higher = torch.zeros(n, dtype=torch.int64, device=hidden.device)
    cat_values = torch.full((n, k), float("-inf"), device=hidden.device)
    cat_items = torch.zeros(n, k, dtype=torch.long, device=hidden.device)
    own = torch.empty(source.shape, device=hidden.device)
    block = max(8, min(256, SCORE_BLOCK_ELEMENTS // (model.num_items + 1)))
    never = torch.iinfo(torch.int64).max
    for lo in range(0, n, block):
        hi = min(lo + block, n)
        scores = model.score(hidden[lo:hi])  # [r, V+1]
        own[lo:hi] = scores.gather(1, source[lo:hi])
        if target is not None and bool((fails_at[lo:hi] < never).any()):  # only pending nodes are checked
            best = own[lo:hi].masked_fill(~target[lo:hi], float("-inf")).max(1).values
            higher[lo:hi] = (scores > best[:, None]).sum(1, dtype=torch.int32)
        rows = (need_catalogue[lo:hi] & (higher[lo:hi] < fails_at[lo:hi])).nonzero()[:, 0]
        if len(rows) == 0:
            continue
        if len(rows) < hi - lo:
            scores = scores.index_select(0, rows)
        scores.scatter_(1, generated[lo:hi].index_select(0, rows), float("-inf"))
        values, items = scores.max(1, keepdim=True) if k == 1 else scores.topk(k, dim=1)
        cat_values[lo + rows], cat_items[lo + rows] = values, items
    return higher, cat_values, cat_items, own


@torch.no_grad()
def _generate_chunk(model: SequentialRecommender, src: Ragged, src_index: np.ndarray, cfg: GenerationConfig,
                    stats: GenerationStats, device: torch.device,
                    should_stop: Callable[[], bool] | None) -> Iterator[GeneratedBatch]:
    """Decode every (sequence, attempt) row of a chunk.

    Rows whose contexts are identical (the m attempts of a sequence share their prefix, and greedy
    picks often coincide) share one decoding *node*: a node is scored and extended once, and
    its rows only differ in their own random draws. This is exact — same context, same scores —
    and cuts the forward passes by several times.
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
    # one node per distinct (source, prefix length)
    keys, row_node = torch.unique(row_src * (max_len + 1) + row_prefix, return_inverse=True)
    node_src, prefix_len = keys // (max_len + 1), keys % (max_len + 1)
    source = sources[node_src]  # [n, Ls]
    width = int(prefix_len.max())
    generated = torch.zeros(len(keys), max_len, dtype=torch.long, device=device)  # [n, T]
    generated[:, :width] = torch.where(torch.arange(width, device=device) < prefix_len[:, None], source[:, :width], 0)
    lengths = prefix_len.clone()  # accepted items per node
    hidden, cache = model.prefill(generated[:, :width], prefix_len, capacity=min(max_len, width + 4))
    pending = torch.zeros(len(keys), dtype=torch.bool, device=device)  # a provisional item waits
    ids = torch.from_numpy(row_ids).to(device)
    stats.rows += len(row_ids)
    check = math.isfinite(cfg.tau)
    src_pos = torch.arange(source.shape[1], device=device)[None, :]
    never = torch.iinfo(torch.int64).max
    step = 0
    while len(ids):
        step_ids = ids.cpu().numpy()
        use_own = torch.from_numpy(uniform(cfg.seed, step_ids, step, _POOL) < cfg.p).to(device)
        pick_u = torch.from_numpy(uniform(cfg.seed, step_ids, step, _PICK)).to(device)
        need_catalogue = torch.zeros_like(pending).index_fill_(0, row_node[~use_own], True)
        held = generated[:, : int((lengths + pending.long()).max())]  # [n, T'] the columns in use
        available = (source > 0) & ~(source[:, :, None] == held[:, None, :]).any(-1)  # [n, Ls]
        target = None
        if check:  # items of s not generated so far (the provisional item included)
            target = available & (src_pos >= prefix_len[:, None]) if cfg.target == "future" else available
        fails_at = torch.where(pending & check, int(min(cfg.tau, never)), never)
        higher, cat_values, cat_items, own_raw = _score_step(model, hidden, source, held, target, fails_at,
                                                       need_catalogue, cfg.top_k)
        fail = higher >= fails_at  # per node
        accepted = pending & ~fail
        lengths += accepted.long()
        at_max = ~fail & (lengths >= max_len)
        # next item per row: top-k inside the user's own items (probability p) or the whole catalogue
        own_values, own_cols = own_raw.masked_fill(~available, float("-inf")).topk(
            min(cfg.top_k, source.shape[1]), dim=1)
        own_item, own_ok = _sample(own_values[row_node], source.gather(1, own_cols)[row_node], pick_u,
                                   cfg.temperature)
        any_item, any_ok = _sample(cat_values[row_node], cat_items[row_node], pick_u, cfg.temperature)
        item = torch.where(use_own, own_item, any_item)
        row_fail, row_max = fail[row_node], at_max[row_node]
        empty = ~row_fail & ~row_max & ~torch.where(use_own, own_ok, any_ok)
        stats.accepted_steps += int(accepted[row_node].sum())
        stats.stopped_fidelity += int(row_fail.sum())
        stats.stopped_length += int(row_max.sum())
        stats.stopped_empty_pool += int(empty.sum())
        done = row_fail | row_max | empty
        if done.any():
            finished = row_node[done]
            yield _emit(ids[done], generated[finished], lengths[finished], prefix_len[finished], cfg, stats)
        if (should_stop is not None and should_stop()) or done.all():
            return
        # the surviving rows regroup into nodes by (parent node, picked item)
        keys, row_node = torch.unique(row_node[~done] * vocab + item[~done], return_inverse=True)
        ids, parent, item = ids[~done], keys // vocab, keys % vocab
        source, prefix_len, lengths = source[parent], prefix_len[parent], lengths[parent]
        generated, cache = generated[parent], cache.select(parent)
        generated[torch.arange(len(parent), device=device), lengths] = item
        if int(cache.lengths.max()) >= cache.capacity:
            cache.grow(min(max_len, 2 * cache.capacity))
        hidden = model.extend(cache, item)
        pending = torch.ones(len(parent), dtype=torch.bool, device=device)
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
             should_stop: Callable[[], bool] | None = None) -> Iterator[GeneratedBatch]:
    """Yield accepted sequences as they finish, with running statistics.

    ``shard = (index, count)`` takes the source sequences whose position is ≡ index (mod count);
    the union over all shards equals the unsharded run.
    """
    index, count = shard
    if not 0 <= index < count:
        raise ConfigError(f"shard index {index} outside [0, {count})")
    if config.max_len > model.config.max_len:
        raise ConfigError(f"max_len {config.max_len} exceeds the model's {model.config.max_len}")
    device = torch.device(device)
    model = model.to(device).eval()
    src, src_index = source_sequences(dataset, config, model.config.max_len)
    mine = np.flatnonzero(np.arange(len(src_index)) % count == index)
    chunk = max(1, config.batch_rows // config.m)
    stats = GenerationStats()
    for start in range(0, len(mine), chunk):
        part = mine[start:start + chunk]
        sub = Ragged.from_list([src.row(i) for i in part])
        yield from _generate_chunk(model, sub, src_index[part], config, stats, device, should_stop)
        if should_stop is not None and should_stop():
            return


def merge_generated(dataset: SequenceDataset, batches: Iterable[GeneratedBatch],
                    dedup: bool = True, name: str | None = None) -> tuple[SequenceDataset, dict[str, int]]:
    """D_{k+1} = D_k ∪ D': order by row id (so shards merge deterministically), drop duplicates of
    each other and of D_k's sequences, and append the rest as synthetic users."""
    pairs = sorted(((int(r), s) for b in batches for r, s in zip(b.row_ids, b.sequences, strict=True)),
                   key=lambda p: p[0])
    seen: set[bytes] = set()
    if dedup:
        train, _ = dataset.training(dataset.sequences.lengths.max(initial=1))
        seen = {s.tobytes() for s in dataset.sequences.to_list()} | {s.tobytes() for s in train.to_list()}
    kept, duplicates = [], 0
    for _, seq in pairs:
        key = seq.astype(np.int64).tobytes()
        if dedup and key in seen:
            duplicates += 1
            continue
        seen.add(key)
        kept.append(seq)
    merged = dataset.with_synthetic(kept, name=name)
    return merged, {"generated": len(pairs), "duplicates": duplicates, "added": len(kept)}
