"""One decoding step's use of the full-catalogue scores (architecture.md §1), in bounded blocks.

Generation needs three things from the scores of a context: whether the user's best remaining
item still ranks within τ (the fidelity check), the scores of the user's own items (the own
pool), and the best unmasked items of the catalogue (the catalogue pool). All three come from one
matrix product per block of contexts, and the [contexts, V] matrix never exists at once, so peak
memory is bounded for any catalogue.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from rsir.models import SequentialRecommender

PRODUCTS = ("packed", "mm", "plain")  # ways CatalogueScorer computes the scores, all bit for bit equal
SCORE_BLOCK_ELEMENTS = 1 << 22  # scores held at once (16 MiB): few calls per step, and bounded for any catalogue
RANK_BLOCK_ELEMENTS = 1 << 26  # evaluation: scores of the users ranked at once (256 MiB), whatever the catalogue
# evaluation prefers blocks of at most 24 MiB of scores, below glibc's largest mmap threshold (32 MiB): after
# the first block the allocator reuses heap memory instead of mapping fresh pages whose first touch (page
# faults) was a quarter of a validation pass at 1024 users of beauty; but never below RANK_MIN_ROWS, which
# keep reading the item table a small part of the work
RANK_REUSED_ELEMENTS = 6 << 20
RANK_MIN_ROWS = 256


def sample(values: Tensor, items: Tensor, u: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    """Top-k sampling from candidates sorted by score: ``values``/``items`` [b, k] (-inf = empty
    slot), ``u`` [b] uniforms. Returns the picked items [b] and whether the pool was non-empty."""
    choice = torch.zeros(len(values), dtype=torch.long, device=values.device)
    if values.shape[1] > 1:
        probs = torch.softmax(values / temperature, dim=1).nan_to_num(0.0)
        choice = (probs.cumsum(1) <= u[:, None]).sum(1).clamp(max=values.shape[1] - 1)
        # never land on an empty (-inf) slot: fall back to the best candidate
        choice = torch.where(torch.isfinite(values.gather(1, choice[:, None]))[:, 0], choice, 0)
    return items.gather(1, choice[:, None])[:, 0], torch.isfinite(values[:, 0])


def count_above(scores: Tensor, rows: Tensor, best: Tensor) -> Tensor:
    """How many items of ``scores[rows[i]]`` score strictly above ``best[i]``: [r, V], [n], [n] → [n];
    ``rows`` sorted, naming every row (nodes come sorted by context). On the CPU this runs in numpy
    (``_count_greater``), and only the nodes after a context's first are compared on copied rows."""
    if scores.device.type != "cpu":
        return (scores.index_select(0, rows) > best[:, None]).sum(1)
    values, rows_np, best_np = scores.numpy(), rows.numpy(), best.numpy()
    first = np.ones(len(rows_np), dtype=bool)
    first[1:] = rows_np[1:] != rows_np[:-1]
    counts = np.empty(len(rows_np), dtype=np.int32)
    counts[first] = _count_greater(values, best_np[first])
    if not first.all():
        rest = ~first
        counts[rest] = _count_greater(values[rows_np[rest]], best_np[rest])
    return torch.from_numpy(counts)


def _count_greater(values: np.ndarray, best: np.ndarray) -> np.ndarray:
    """Per row, how many of ``values`` [r, V] exceed ``best`` [r]. The comparison lands in a byte
    mask padded to whole 64-bit words; each byte is 0 or 1, so a word's popcount is how many of its
    8 bytes are set. About 1.7× numpy's int32 sum of the mask, and 4× torch's compare and sum."""
    r, v = values.shape
    mask = np.empty((r, -(-v // 8) * 8), dtype=bool)
    mask[:, v:] = False
    np.greater(values, best[:, None], out=mask[:, :v])
    return np.bitwise_count(mask.view(np.uint64)).sum(1, dtype=np.int32)


def _rows_within(num_items: int, most: int, elements: int) -> int:
    """``most`` rows of [V+1] scores, fewer where they would pass ``elements``; 8 at least."""
    return max(8, min(most, elements // (num_items + 1)))


def score_block(num_items: int) -> int:
    """The most contexts scored at once (256 on beauty): the block stays bounded for any catalogue,
    and ``CatalogueScorer.fastest`` may pick a smaller one."""
    return _rows_within(num_items, 256, SCORE_BLOCK_ELEMENTS)


def rank_block(num_items: int, batch_size: int) -> int:
    """The most users evaluation ranks at once: ``batch_size``, fewer where their [b, V+1] scores would
    pass ``RANK_REUSED_ELEMENTS`` but not below ``RANK_MIN_ROWS``, and never past ``RANK_BLOCK_ELEMENTS``
    (519 on beauty's 12k items, 256 from 24k to 262k items, 55 at 1.2M)."""
    reused = max(RANK_REUSED_ELEMENTS // (num_items + 1), RANK_MIN_ROWS)
    return _rows_within(num_items, min(batch_size, reused), RANK_BLOCK_ELEMENTS)


class CatalogueScorer:
    """``model.score`` for blocks of up to ``rows`` hidden states [r, D] → [r, V+1], bit for bit.

    On the CPU the item table is prepared once for a ``product``: ``packed``, reordered into
    oneDNN's blocked layout (less than half the time of ``model.score``, which re-packs the 12k × 64
    table on every call), or ``mm``, transposed once into a contiguous [D, V+1] for ``torch.mm``;
    ``plain`` is ``model.score`` itself (also the fallback of a build without oneDNN's kernels).
    """

    def __init__(self, model: SequentialRecommender, rows: int, product: str = "packed"):
        if product not in PRODUCTS:
            raise ValueError(f"product must be one of {PRODUCTS}, got {product!r}")
        self.num_items, self.rows, self.product = model.num_items, rows, "plain"
        self._plain: Callable[[Tensor], Tensor] = model.score
        table = model.item_table().detach()
        if table.device.type != "cpu" or product == "plain":
            return
        if product == "mm":
            transposed = table.T.contiguous()
            self._product: Callable[[Tensor], Tensor] = lambda hidden: torch.mm(hidden, transposed)
        else:
            if not torch.backends.mkldnn.is_available():
                return
            try:
                packed = torch.ops.mkldnn._reorder_linear_weight(table, rows)
                self._product = lambda hidden: torch.ops.mkldnn._linear_pointwise(hidden, packed, None, "none", [], "")
                self._product(table[:1])
            except (AttributeError, RuntimeError, NotImplementedError):  # a build without these kernels
                return
        self.product = product

    @classmethod
    @torch.no_grad()
    def fastest(cls, model: SequentialRecommender, rows: int, repeats: int = 2) -> CatalogueScorer:
        """The fastest exact scorer on this machine for blocks of at most ``rows``: each product at
        ``rows``, ``rows/2`` and ``rows/4`` (≥ 8) a block, timed on a seeded probe of ``rows`` states.
        The best differs by machine (beauty, 1 thread: packed at 256 rows on an AMD EPYC; mm at 128,
        0.7× that time, on a Sapphire Rapids Xeon). A product counts only if it reproduces
        ``model.score`` bit for bit on the probe, which keeps generation equal to the oracle."""
        if model.item_table().device.type != "cpu":
            return cls(model, rows)
        probe = torch.randn(rows, model.config.dim, generator=torch.Generator().manual_seed(0))
        reference = model.score(probe)
        sizes = sorted({min(rows, max(8, rows >> shift)) for shift in range(3)})
        seconds: dict[tuple[str, int], float] = {}
        for product in PRODUCTS[:-1]:
            scorer = cls(model, rows, product)
            if scorer.product == product and torch.equal(scorer(probe), reference):
                for size in sizes:
                    scorer(probe[:size])  # warm up
                    start = time.perf_counter()
                    for _ in range(repeats):
                        for lo in range(0, rows, size):
                            scorer(probe[lo:lo + size])
                    seconds[product, size] = time.perf_counter() - start
            del scorer  # one prepared table at a time: a million-item catalogue's takes 244 MiB
        product, size = min(seconds, key=seconds.__getitem__) if seconds else ("plain", rows)
        return cls(model, size, product)

    def __call__(self, hidden: Tensor) -> Tensor:
        if self.product == "plain":
            return self._plain(hidden)
        logits = self._product(hidden)
        logits[:, 0] = float("-inf")  # padding, as model.score
        return logits


def top_items(scores: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Top-k values and items per row [r, V] → [r, k]; k = 1 through numpy's argmax on the CPU,
    which is an order of magnitude faster than torch's ``max(dim)`` there (same first-index ties)."""
    if k > 1:
        return scores.topk(k, dim=1)
    if scores.device.type != "cpu":
        return scores.max(1, keepdim=True)
    items = torch.from_numpy(scores.numpy().argmax(1))[:, None]
    return scores.gather(1, items), items


def score_contexts(score: CatalogueScorer, hidden: Tensor, held: Tensor, need_catalogue: Tensor, node_ctx: Tensor,
                   source: Tensor, target: Tensor | None, tau: float,
                   top_k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Everything one step needs from the full-catalogue scores of ``c`` distinct contexts,
    computed in blocks of ``score.rows`` contexts (the [c, V] matrix never exists at once).

    hidden [c, D] and held [c, T] (the items of each context); ``need_catalogue`` [c] whether any
    row of the context draws from the whole catalogue. Nodes (a user's source on a context) come
    sorted by context (``node_ctx`` [n]); source [n, Ls] the users' items;
    target [n, Ls] the items that count for fidelity (None: no check). Returns per node ``fail``
    [n] (at least τ items score above every target) and the raw scores of its
    source items [n, Ls]; per context the catalogue top-k values and items [c, k] (the context's
    items masked; -inf where not needed).
    """
    c, n = len(hidden), len(node_ctx)
    k = min(top_k, score.num_items)
    fail = torch.zeros(n, dtype=torch.bool, device=hidden.device)
    cat_values = torch.full((c, k), float("-inf"), device=hidden.device)
    cat_items = torch.zeros(c, k, dtype=torch.long, device=hidden.device)
    own = torch.empty(source.shape, device=hidden.device)
    starts = [0, *torch.bincount(node_ctx, minlength=c).cumsum(0).tolist()]  # nodes of context i: starts[i:i+2]
    for lo in range(0, c, score.rows):
        hi = min(lo + score.rows, c)
        a, b = starts[lo], starts[hi]
        scores = score(hidden[lo:hi])  # [r, V+1]
        local = node_ctx[a:b] - lo
        own[a:b] = scores[local[:, None], source[a:b]]
        if target is not None:
            best = own[a:b].masked_fill(~target[a:b], float("-inf")).max(1).values
            fail[a:b] = count_above(scores, local, best) >= tau
        alive = torch.zeros(hi - lo, dtype=torch.bool, device=hidden.device).index_fill_(0, local[~fail[a:b]], True)
        rows = (need_catalogue[lo:hi] & alive).nonzero()[:, 0]
        if len(rows) == 0:
            continue
        # a top-k over rows that do not need it costs more than copying out those that do; an argmax does not
        subset = k > 1 and len(rows) < hi - lo
        picked = scores.index_select(0, rows) if subset else scores
        picked.scatter_(1, held[lo:hi].index_select(0, rows) if subset else held[lo:hi], float("-inf"))
        values, items = top_items(picked, k)
        cat_values[lo + rows], cat_items[lo + rows] = (values, items) if subset else (values[rows], items[rows])
    return fail, own, cat_values, cat_items
