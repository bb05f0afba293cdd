"""Training's optimiser: fused Adam, and lazy Adam on the item table where a step touches few rows.

With the full softmax every item's logit has a gradient, so the item table's gradient is dense and
one fused Adam over all parameters is the cheapest update (one pass over them, 4-7× cheaper per
step than the per-tensor loop on a CPU). With the sampled softmax a step touches only the items of
its batch and its negatives, yet dense Adam still reads and writes every row of the table and of
both moment buffers: at a million items that update costs more than the rest of the step and grows
with the catalogue. ``item_updates = "auto"`` then gives the table sparse gradients and
``torch.optim.SparseAdam``, which updates only the touched rows and their moments (lazy Adam:
an untouched row's moments do not decay), so the cost of a step follows the batch, not the
catalogue. It stays dense where that cannot apply: the full softmax, weight decay (SparseAdam has
none), and data-parallel training (NCCL has no sparse all-reduce).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from rsir.config import TrainConfig
from rsir.distributed import World
from rsir.losses import resolve_loss
from rsir.models import SequentialRecommender


def lazy_item_updates(model: SequentialRecommender, config: TrainConfig, world: World | None) -> bool:
    """Whether the item table is updated sparsely (see the module docstring)."""
    return (config.item_updates == "auto" and world is None and config.weight_decay == 0
            and resolve_loss(config, model.num_items, model.config.max_len) == "sampled")


@contextmanager
def adam(model: SequentialRecommender, config: TrainConfig,
         world: World | None) -> Iterator[list[torch.optim.Optimizer]]:
    """The optimisers of one training stage (step each of them); with lazy item updates, or the full
    softmax in one process, the table's embedding yields sparse gradients for as long as the stage runs."""
    table, lazy = model.item_emb.weight, lazy_item_updates(model, config, world)
    # with the full softmax in one process, the input lookups' sparse gradient is added into the loss's
    # dense one row by row, instead of through a zeroed copy of the whole table every step
    full = resolve_loss(config, model.num_items, model.config.max_len) == "ce"
    model.item_emb.sparse = lazy or (full and world is None)
    try:
        if lazy:
            rest = [p for p in model.parameters() if p is not table]
            yield [torch.optim.Adam(rest, lr=config.lr, fused=True), torch.optim.SparseAdam([table], lr=config.lr)]
        else:
            yield [torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)]
    finally:
        model.item_emb.sparse = False
