"""GRU4Rec: a small recurrent next-item model, the cheap teacher.

Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks", ICLR 2016
(arXiv:1511.06939). An embedding, a GRU and scores tied to the item embeddings. Its decoding cache
is just the recurrent state, so generation with it is very cheap.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rsir.config import ModelConfig
from rsir.models.base import DecodeCache, Dropout, SequentialRecommender


class GRU4Rec(SequentialRecommender):
    supports_segments = False  # a recurrent state cannot be reset per segment inside one row

    def __init__(self, config: ModelConfig, num_items: int):
        super().__init__(config, num_items)
        self.dropout = Dropout(config.dropout)
        self.gru = nn.GRU(config.dim, config.dim, num_layers=config.layers, batch_first=True,
                          dropout=config.dropout if config.layers > 1 else 0.0)
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, items: Tensor, segments: Tensor | None = None) -> Tensor:
        """Right-padded rows [B, L] → [B, L, D]. The recurrence runs over each row's real items only
        (a packed sequence): random training batches are mostly padding (toys: rows of up to 50
        items, 6.5 on average), and the padded form cost about twice the CPU time per step."""
        if segments is not None:
            raise ValueError("GRU4Rec takes right-padded rows, not packed segments")
        lengths = (items != 0).sum(1).clamp(min=1).cpu()  # [B]; an empty row still takes one step
        packed = pack_padded_sequence(self.dropout(self.item_emb(items)), lengths, batch_first=True,
                                      enforce_sorted=False)
        out, _ = pad_packed_sequence(self.gru(packed)[0], batch_first=True, total_length=items.shape[1])
        return self.norm(out)

    def prefill(self, items: Tensor, lengths: Tensor, capacity: int) -> tuple[Tensor, DecodeCache]:
        packed = pack_padded_sequence(self.item_emb(items), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, h = self.gru(packed)  # [layers, B, D], the state after each row's last real item
        return self.norm(h[-1]), DecodeCache([h.transpose(0, 1).contiguous()], lengths.clone(), [None])

    def extend(self, cache: DecodeCache, items: Tensor) -> Tensor:
        out, h = self.gru(self.item_emb(items)[:, None], cache.state[0].transpose(0, 1).contiguous())
        cache.state[0] = h.transpose(0, 1).contiguous()
        cache.lengths = cache.lengths + 1
        return self.norm(out[:, 0])



