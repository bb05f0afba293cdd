"""CL4SRec: SASRec with a contrastive objective over augmented views.

Xie et al., "Contrastive Learning for Sequential Recommendation", ICDE 2022 (arXiv:2010.14395).
Two views of every training sequence are made by a random choice of crop, mask and reorder; the
sequence representations (last position) of the two views are pulled together against the other
2B − 2 views of the batch (NT-Xent), weighted by ``cl_weight``. The views are encoded packed, like
training batches, so that padding costs nothing. Inference is plain SASRec.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rsir.batching import pack_padded
from rsir.config import ModelConfig
from rsir.models.sasrec import SASRec


class CL4SRec(SASRec):
    def __init__(self, config: ModelConfig, num_items: int):
        super().__init__(config, num_items, extra_tokens=1)
        self.mask_token = num_items + 1

    def augment(self, items: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """One random view per row: items [B, L] right-padded, lengths [B] → (view, view lengths)."""
        b, n = items.shape
        cfg = self.config
        dev = items.device
        ar = torch.arange(n, device=dev).expand(b, n)
        op = torch.randint(3, (b,), device=dev)  # 0 crop, 1 mask, 2 reorder
        # crop: a random window of ceil-free length max(1, ⌊η·len⌋), moved to position 0
        crop_len = (lengths.float() * cfg.crop_ratio).long().clamp(min=1)
        crop_start = (torch.rand(b, device=dev) * (lengths - crop_len + 1).float()).long()
        # reorder: shuffle a random span of ⌊β·len⌋ items by sorting random keys inside it
        span = (lengths.float() * cfg.reorder_ratio).long()
        span_start = (torch.rand(b, device=dev) * (lengths - span + 1).float()).long()
        in_span = (ar >= span_start[:, None]) & (ar < (span_start + span)[:, None])
        keys = torch.where(in_span, span_start[:, None] + torch.rand(b, n, device=dev) * span[:, None].clamp(min=1),
                           ar.float())
        index = torch.where((op == 0)[:, None], (crop_start[:, None] + ar).clamp(max=n - 1),
                            torch.where((op == 2)[:, None], keys.argsort(dim=1), ar))
        view = items.gather(1, index)
        new_len = torch.where(op == 0, crop_len, lengths)
        valid = ar < new_len[:, None]
        masked = (op == 1)[:, None] & valid & (torch.rand(b, n, device=dev) < cfg.mask_ratio)
        view = torch.where(masked, torch.full_like(view, self.mask_token), view)
        return torch.where(valid, view, torch.zeros_like(view)), new_len

    @property
    def has_auxiliary_loss(self) -> bool:  # type: ignore[override]
        return self.config.cl_weight > 0

    def auxiliary_loss(self, items: Tensor, lengths: Tensor) -> Tensor:
        if len(items) < 2:
            return items.new_zeros((), dtype=torch.float)
        both = torch.cat([items, items]), torch.cat([lengths, lengths])
        tokens, segments, last = pack_padded(*self.augment(*both))  # two views of every row, packed
        z = self.forward(tokens, segments).flatten(0, 1)[last]  # [2B, D]
        sim = z @ z.T / self.config.cl_temperature
        sim.fill_diagonal_(float("-inf"))
        b = len(items)
        labels = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(items.device)
        return self.config.cl_weight * F.cross_entropy(sim, labels)
