"""BSARec: self-attention beside an attentive inductive bias in the frequency domain.

Shin et al., "An Attentive Inductive Bias for Sequential Recommendation beyond the Self-Attention",
AAAI 2024 (arXiv:2312.10325). Self-attention acts as a low-pass filter that over-smooths a sequence;
each layer therefore mixes it with a branch that keeps the low frequencies of its input along the
sequence and rescales the rest by a learned β per channel. Over a window of N positions:

    LPF(X) = F⁻¹(M_c ⊙ F(X))          real FFT along the sequence, bins 0..⌊c/2⌋ kept
    B(X)   = LPF(X) + β ⊙ (X − LPF(X)),   β = b², b ~ N(0, 1) at start
    H      = α · LN(X + Drop(B(X))) + (1 − α) · LN(X + Drop(MHSA(X)))
    out    = LN(H + Drop(FFN(H)))

over LayerNorm'd item + position embeddings, as in SASRec (``models.sasrec``).

Causality: LPF is a dense N × N map, so every position of a window sees every other, later ones
included; one encoding of a sequence cannot train all its next-item positions at once. The authors
train on every prefix as its own example, left-padded to N = ``max_len`` (positions count back from
the last item, which sits at N − 1), and score only the last position's output. ``forward`` does
exactly that for every position t: it returns the last output of the window that ends at t, so
each output sees only its past and the library's per-position loss over a packed batch is the
authors' per-prefix loss, at N window positions per target instead of one.
Generation has no incremental cache: the cache keeps the items and every step re-encodes one
window per row.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rsir.config import ModelConfig
from rsir.models.base import DecodeCache, Dropout, SequentialRecommender


def low_pass_matrix(n: int, c: int) -> Tensor:
    """The FFT low-pass over ``n`` positions that keeps rfft bins 0..⌊c/2⌋, as the [n, n] matrix it
    is (a fixed linear map: one matrix product instead of a complex FFT pair per call)."""
    spectrum = torch.fft.rfft(torch.eye(n, dtype=torch.float64), dim=0, norm="ortho")  # [n//2 + 1, n]
    keep = torch.arange(n // 2 + 1)[:, None] <= c // 2
    return torch.fft.irfft(spectrum * keep, n=n, dim=0, norm="ortho").float()


class BSARecBlock(nn.Module):
    """One layer (module docstring). Its attention and feed-forward parameters are named as in
    ``sasrec.CausalBlock``, which it equals at α = 0."""

    low_pass: Tensor  # [N, N]

    def __init__(self, dim: int, heads: int, dropout: float, window: int, alpha: float, c: int):
        super().__init__()
        self.heads, self.alpha, self.attn_dropout = heads, alpha, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.sqrt_beta = nn.Parameter(torch.randn(dim))
        self.filter_norm = nn.LayerNorm(dim)
        self.register_buffer("low_pass", low_pass_matrix(window, c), persistent=False)
        self.dropout = Dropout(dropout)

    def inductive_bias(self, x: Tensor, last: bool = False) -> Tensor:
        """B(X): x [B, N, D] → [B, N, D], or with ``last`` its last position [B, 1, D]."""
        low = (self.low_pass[-1:] if last else self.low_pass) @ x
        x = x[:, -low.shape[1]:]
        return low + self.sqrt_beta ** 2 * (x - low)

    def forward(self, x: Tensor, mask: Tensor, last: bool = False) -> Tensor:
        """x [B, N, D], attention mask [B, N, N] (True: may attend) → [B, N, D], or with ``last``
        only the last position's output [B, 1, D] (a final layer needs no other)."""
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if last:
            q, mask = q[:, :, -1:], mask[:, -1:]
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None],
                                              dropout_p=self.attn_dropout if self.training else 0.0)
        x_q = x[:, -q.shape[2]:]  # the positions that get an output
        s = self.norm1(x_q + self.dropout(self.out(attn.transpose(1, 2).reshape(b, q.shape[2], d))))
        a = self.filter_norm(x_q + self.dropout(self.inductive_bias(x, last)))
        h = self.alpha * a + (1 - self.alpha) * s
        return self.norm2(h + self.dropout(self.ffn(h)))


class BSARec(SequentialRecommender):
    def __init__(self, config: ModelConfig, num_items: int):
        super().__init__(config, num_items)
        self.pos_emb = nn.Embedding(config.max_len, config.dim)
        self.emb_norm = nn.LayerNorm(config.dim)
        self.emb_dropout = Dropout(config.dropout)
        self.blocks = nn.ModuleList(BSARecBlock(config.dim, config.heads, config.dropout, config.max_len,
                                                config.bsarec_alpha, config.bsarec_c) for _ in range(config.layers))
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding) and module is not self.item_emb:
                nn.init.normal_(module.weight, std=0.02)
                if isinstance(module, nn.Linear):
                    nn.init.zeros_(module.bias)

    def encode(self, windows: Tensor) -> Tensor:
        """Left-padded windows [B, N] (item 0 = padding, the last item at N − 1) → the output at the
        last position [B, D]. Real positions attend causally to real ones; padding, which only the
        frequency branch carries on, attends to the whole window, as the authors' additive mask does."""
        n = windows.shape[1]
        x = self.emb_dropout(self.emb_norm(self.item_emb(windows) + self.pos_emb.weight))
        real = windows > 0
        causal = torch.ones(n, n, dtype=torch.bool, device=windows.device).tril()
        mask = (causal & real[:, None, :]) | ~real[:, :, None]  # [B, N, N]
        for i, block in enumerate(self.blocks):
            x = block(x, mask, last=i == len(self.blocks) - 1)
        return x[:, -1]

    def _windows(self, items: Tensor, ends: Tensor, segments: Tensor | None = None) -> Tensor:
        """Rows ``items`` [B, L] → for every column ``ends`` [B, K] the up to N items of its sequence
        (its segment, if ``segments`` [B, L] is given) that end there, left-padded: [B, K, N]."""
        cols = ends[..., None] - torch.arange(self.config.max_len - 1, -1, -1, device=items.device)
        rows = torch.arange(len(items), device=items.device)[:, None, None]
        inside = cols >= 0
        cols = cols.clamp(min=0)
        if segments is not None:
            inside &= segments[rows, cols] == segments.gather(1, ends)[..., None]
        return torch.where(inside, items[rows, cols], 0)

    def forward(self, items: Tensor, segments: Tensor | None = None) -> Tensor:
        """Position t's output is the last output of the window ending at t (module docstring):
        [B, L] → [B, L, D], zero at padding."""
        ends = torch.arange(items.shape[1], device=items.device).expand_as(items)
        real = items > 0
        hidden = self.encode(self._windows(items, ends, segments)[real])  # [real positions, D]
        out = hidden.new_zeros(*items.shape, hidden.shape[-1])
        out[real] = hidden
        return out

    def last_hidden(self, items: Tensor, lengths: Tensor) -> Tensor:
        return self.encode(self._windows(items, (lengths - 1)[:, None])[:, 0])

    def prefill(self, items: Tensor, lengths: Tensor, capacity: int) -> tuple[Tensor, DecodeCache]:
        buffer = F.pad(items, (0, capacity - items.shape[1]))
        return self.last_hidden(items, lengths), DecodeCache([buffer], lengths.clone(), [1])

    def extend(self, cache: DecodeCache, items: Tensor) -> Tensor:
        buffer = cache.state[0]
        buffer[torch.arange(len(items), device=items.device), cache.lengths] = items
        cache.lengths = cache.lengths + 1
        return self.last_hidden(buffer, cache.lengths)
