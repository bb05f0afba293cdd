"""Next-item losses: full softmax over the catalogue (fused) and sampled softmax.

The full softmax is the bulk of a training step: every real position is scored against every
item, an [N, V+1] matrix that autograd would write, cast, read back for the softmax, and keep for
the backward pass. ``linear_cross_entropy`` computes the loss and both gradients in one pass over
that matrix instead: the products run in the compute dtype (bf16 where the hardware has it), the
softmax in fp32 on row blocks small enough to stay in cache, and the gradient overwrites the
logits in place, so no fp32 copy of the matrix exists and the backward pass is two products.

That matrix still grows with the catalogue. ``loss = "auto"`` (the default) keeps the full softmax
while the logits of a worst-case batch fit ``FULL_SOFTMAX_BUDGET_BYTES`` and switches to the sampled
softmax, with a warning that says so, beyond that catalogue size (``resolve_loss``): the decision
depends on the settings and the catalogue alone, so every machine trains the same model.
"""

from __future__ import annotations

import logging
import threading
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rsir.config import TrainConfig
from rsir.models import SequentialRecommender

SOFTMAX_BLOCK_ELEMENTS = 1 << 19  # fp32 logits per softmax block on a CPU (2 MiB): stays in a core's cache
# fp32 logits of one worst-case batch (batch_size × max_len positions × every item) that "auto" allows the
# full softmax: 41,942 items at batch 256 and max_len 50 (beauty, sports, toys and yelp stay below)
FULL_SOFTMAX_BUDGET_BYTES = 2 << 30
logger = logging.getLogger(__name__)
_buffers = threading.local()


def full_softmax_bytes(batch_size: int, max_len: int, num_items: int) -> int:
    """fp32 logits of a batch whose every sequence fills ``max_len`` positions, scored against every item."""
    return batch_size * max_len * (num_items + 1) * 4


def resolve_loss(config: TrainConfig, num_items: int, max_len: int) -> str:
    """``config.loss`` with ``auto`` resolved: ``ce`` while ``full_softmax_bytes`` fits
    ``FULL_SOFTMAX_BUDGET_BYTES``, else ``sampled``."""
    if config.loss != "auto":
        return config.loss
    return "ce" if full_softmax_bytes(config.batch_size, max_len, num_items) <= FULL_SOFTMAX_BUDGET_BYTES else "sampled"


@cache
def _announce(num_items: int, batch_size: int, max_len: int, negatives: int) -> None:
    """Say once per process and shape that ``auto`` chose the sampled softmax, and why."""
    need = full_softmax_bytes(batch_size, max_len, num_items)
    logger.warning("loss=auto: the full softmax over %s items needs %.1f GiB of logits for a batch of %d × %d "
                   "positions, over the %.1f GiB budget (rsir.losses.FULL_SOFTMAX_BUDGET_BYTES): training with "
                   "the sampled softmax (%d negatives) instead; loss=ce forces the full softmax",
                   f"{num_items:,}", need / 2**30, batch_size, max_len, FULL_SOFTMAX_BUDGET_BYTES / 2**30, negatives)


def _buffer(rows: int, columns: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """An uninitialised [rows, columns] tensor for the logits, on a CPU reused from the previous step
    of this thread (grown when a batch needs more): a fresh one of tens of MB is mapped anew by the
    allocator at every step, and touching its pages the first time costs as much as the product.
    :func:`release_buffers` returns it; a GPU's caching allocator already reuses the memory."""
    if device.type != "cpu":
        return torch.empty(rows, columns, dtype=dtype, device=device)
    kept = getattr(_buffers, "logits", None)
    if kept is None or kept.dtype != dtype or kept.numel() < rows * columns:
        kept = _buffers.logits = None  # the old one is freed before the larger one is made
        kept = _buffers.logits = torch.empty(rows * columns, dtype=dtype)
    return kept[:rows * columns].view(rows, columns)


def release_buffers() -> None:
    """Free this thread's logits buffer (training calls it when it ends)."""
    _buffers.logits = None


class _LinearCrossEntropy(torch.autograd.Function):
    """sum_i scale[i] · CE(hidden[i] @ table.T, target[i]), item 0 (padding) excluded; the
    gradients are computed in the forward pass and scaled by the incoming gradient in backward."""

    @staticmethod
    def forward(ctx: Any, hidden: Tensor, table: Tensor, target: Tensor, scale: Tensor,
                dtype: torch.dtype) -> Tensor:
        h, t = hidden.to(dtype), table.to(dtype)  # [N, D], [V+1, D]
        logits = torch.mm(h, t.T, out=_buffer(len(h), len(t), dtype, h.device))  # [N, V+1], becomes the gradient
        logits[:, 0] = float("-inf")
        n, width = logits.shape
        rows = torch.arange(n, device=logits.device)
        block = n if logits.is_cuda else max(1, SOFTMAX_BLOCK_ELEMENTS // width)  # a GPU wants few large kernels
        for start in range(0, n, block):
            part = logits[start:start + block]
            part.copy_(torch.softmax(part, 1))  # summed in fp32 inside the kernel, stored in the compute dtype
        p_target = logits[rows, target].float()
        logits[rows, target] -= 1  # softmax − one-hot; each row's scale goes on the [N, D] factors instead
        scaled = (hidden.float() * scale[:, None]).to(dtype)  # [N, D]
        ctx.save_for_backward((logits @ t).float() * scale[:, None], logits.T @ scaled)
        ctx.dtypes = hidden.dtype, table.dtype
        return -(p_target.clamp_min(torch.finfo(torch.float32).tiny).log() * scale).sum()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        grad_hidden, grad_table = ctx.saved_tensors
        return (grad_hidden.to(ctx.dtypes[0]) * grad, grad_table.to(ctx.dtypes[1]) * grad, None, None, None)


def linear_cross_entropy(hidden: Tensor, table: Tensor, target: Tensor, weights: Tensor,
                         dtype: torch.dtype = torch.float32) -> Tensor:
    """Weighted mean full-softmax cross-entropy of ``hidden`` [N, D] scored against ``table``
    [V+1, D] (row 0, padding, never a class), ``target`` [N] in 1..V, ``weights`` [N]; equal to
    ``F.cross_entropy(model.score(hidden), target)`` weighted, computed in ``dtype``. The reported
    loss of a target whose probability underflows fp32 saturates at about 87; its gradient does not."""
    with torch.autocast(hidden.device.type, enabled=False):
        scale = (weights / weights.sum()).float()
        return _LinearCrossEntropy.apply(hidden, table, target, scale, dtype)


def next_item_loss(model: SequentialRecommender, batch: dict[str, Tensor], weights: Tensor,
                   config: TrainConfig, dtype: torch.dtype = torch.float32) -> Tensor:
    """Weighted mean next-item loss over the real positions of a ``rsir.batching.Batch``.

    ``batch`` holds its arrays as tensors; ``weights`` [B] scale each sequence's positions
    (synthetic data may weigh less). Hidden states are gathered at real positions first, so only
    they are scored against the catalogue. Matrix products run in ``dtype``.
    """
    segments = batch["segments"] if model.supports_segments else None
    with torch.autocast(batch["tokens"].device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        hidden = model(batch["tokens"], segments)  # [R, W, D]
    real = batch["targets"] > 0  # [R, W]
    h, target, seq = hidden[real], batch["targets"][real], batch["sequence"][real]  # [N, D], [N], [N]
    w = weights[seq]
    loss = resolve_loss(config, model.num_items, model.config.max_len)
    if loss == "ce":
        return linear_cross_entropy(h, model.item_table(), target, w, dtype)
    if config.loss == "auto":
        _announce(model.num_items, config.batch_size, model.config.max_len, config.negatives)
    negatives = torch.randint(1, model.num_items + 1, (config.negatives,), device=h.device)  # [K]
    # own[b, k]: negative k is an item of sequence b (inputs or targets), so it is excluded
    items = torch.cat([batch["tokens"][real], target])
    owner = torch.cat([seq, seq])
    own = torch.zeros(len(weights), config.negatives, dtype=torch.bool, device=h.device)
    own.index_put_((owner,), items[:, None] == negatives[None, :], accumulate=True)
    h = h.float()
    neg_logits = (h @ model.item_emb(negatives).T).masked_fill(own[seq], float("-inf"))  # [N, K]
    pos_logits = (h * model.item_emb(target)).sum(-1, keepdim=True)
    logits = torch.cat([pos_logits, neg_logits], dim=1)  # [N, 1+K], the positive is class 0
    losses = F.cross_entropy(logits, torch.zeros_like(target), reduction="none")
    return (losses * w).sum() / w.sum()
