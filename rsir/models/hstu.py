"""HSTU: Hierarchical Sequential Transduction Units.

Zhai et al., "Actions Speak Louder than Words: Trillion-Parameter Sequential Transducers for
Generative Recommendations", ICML 2024 (arXiv:2402.17152). Each layer projects LN(x) into
U, V, Q, K through one SiLU-activated linear map; attention is *pointwise*: SiLU(QKᵀ + rab) / n
with a causal mask and no softmax, where rab is a learned relative-position bias; the output is
gated, ``x + W_o(U ⊙ LN(A V))``. As in the official research code, n is the maximum sequence
length (a constant, so a row's output does not depend on how much padding its batch carries).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsir.config import ModelConfig
from rsir.models.base import DecodeCache, Dropout, SequentialRecommender, segment_mask, segment_positions


class HSTULayer(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, max_len: int):
        super().__init__()
        self.heads = heads
        self.max_len = max_len
        self.uvqk = nn.Linear(dim, 4 * dim, bias=False)
        nn.init.normal_(self.uvqk.weight, std=0.02)
        self.rel_bias = nn.Parameter(torch.randn(max_len) * 0.02)  # bias[i - j] for j ≤ i
        self.out = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.out.weight)
        self.dropout = Dropout(dropout)

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        b, n, d = x.shape
        u, v, q, k = F.silu(self.uvqk(F.layer_norm(x, (d,)))).chunk(4, dim=-1)
        heads = (b, n, self.heads, d // self.heads)
        return u, v.view(heads).transpose(1, 2), q.view(heads).transpose(1, 2), k.view(heads).transpose(1, 2)

    def _finish(self, x: Tensor, u: Tensor, attn: Tensor) -> Tensor:
        b, _, n, _ = attn.shape
        attn = attn.transpose(1, 2).reshape(b, n, -1)
        return x + self.out(self.dropout(u * F.layer_norm(attn, attn.shape[-1:])))

    def forward(self, x: Tensor, positions: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, L, D], positions [B, L], attention mask [B, L, L] →
        (y [B, L, D], keys, values [B, H, L, dh])."""
        u, v, q, k = self._project(x)
        rel = positions[:, :, None] - positions[:, None, :]  # [B, L, L], i - j
        bias = self.rel_bias[rel.clamp(0, self.max_len - 1)][:, None]  # [B, 1, L, L]
        weights = F.silu(q @ k.transpose(-1, -2) + bias) / self.max_len * mask[:, None]  # [B, H, L, L]
        return self._finish(x, u, weights @ v), k, v

    def step(self, x: Tensor, keys: Tensor, values: Tensor, pos: Tensor) -> Tensor:
        """x [B, 1, D] at positions ``pos`` [B]; writes into keys/values [B, H, C, dh] in place."""
        u, v, q, k = self._project(x)
        rows = torch.arange(len(x), device=x.device)
        keys[rows, :, pos] = k[:, :, 0]
        values[rows, :, pos] = v[:, :, 0]
        rel = pos[:, None] - torch.arange(keys.shape[2], device=x.device)[None, :]  # [B, C]
        bias = self.rel_bias[rel.clamp(0, self.max_len - 1)][:, None, None, :]
        weights = F.silu(q @ keys.transpose(-1, -2) + bias) / self.max_len * (rel >= 0)[:, None, None, :]
        return self._finish(x, u, weights @ values)


class HSTU(SequentialRecommender):
    def __init__(self, config: ModelConfig, num_items: int):
        super().__init__(config, num_items)
        self.pos_emb = nn.Embedding(config.max_len, config.dim)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        self.emb_dropout = Dropout(config.dropout)
        self.layers = nn.ModuleList(HSTULayer(config.dim, config.heads, config.dropout, config.max_len)
                                    for _ in range(config.layers))
        self.final_norm = nn.LayerNorm(config.dim)

    def _embed(self, items: Tensor, positions: Tensor) -> Tensor:
        scale = self.config.dim ** 0.5
        return self.emb_dropout(self.item_emb(items) * scale + self.pos_emb(positions))

    def forward(self, items: Tensor, segments: Tensor | None = None) -> Tensor:
        if segments is None:
            segments = torch.ones_like(items)
        positions, mask = segment_positions(segments), segment_mask(segments)
        x = self._embed(items, positions)
        for layer in self.layers:
            x, _, _ = layer(x, positions, mask)
        return self.final_norm(x)

    def prefill(self, items: Tensor, lengths: Tensor, capacity: int) -> tuple[Tensor, DecodeCache]:
        b, n = items.shape
        positions = torch.arange(n, device=items.device).expand_as(items)
        mask = segment_mask(torch.ones_like(items))
        x = self._embed(items, positions)
        state = []
        for layer in self.layers:
            x, k, v = layer(x, positions, mask)
            state += [F.pad(k, (0, 0, 0, capacity - n)), F.pad(v, (0, 0, 0, capacity - n))]
        last = self.final_norm(x[torch.arange(b, device=items.device), lengths - 1])
        return last, DecodeCache(state, lengths.clone(), [2] * len(state))

    def extend(self, cache: DecodeCache, items: Tensor) -> Tensor:
        pos = cache.lengths
        x = self._embed(items[:, None], pos[:, None])
        for i, layer in enumerate(self.layers):  # a ModuleList's items are typed as plain Modules
            x = cast(HSTULayer, layer).step(x, cache.state[2 * i], cache.state[2 * i + 1], pos)
        cache.lengths = pos + 1
        return self.final_norm(x[:, 0])
