"""The reference implementation of Algorithm 1: one sequence and one attempt at a time.

Deliberately plain: it re-encodes the whole context at every step (no cache, no batching, no
chunking) and follows architecture.md §1 line by line, so it is the oracle that the batched
``rsir.generation.generate`` must reproduce exactly for k = 1 (tests/core/test_generation.py),
and the baseline that bench/generation_speed.py times it against.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from rsir.config import GenerationConfig
from rsir.datasets import SequenceDataset
from rsir.generation import source_sequences, uniform
from rsir.models import SequentialRecommender

_POOL, _PREFIX = 0, 2  # rsir.generation's random streams: the same draws decide the same choices


def oracle(model: SequentialRecommender, dataset: SequenceDataset, cfg: GenerationConfig,
           limit: int | None = None) -> dict[int, list[int]]:
    """Generated sequences by row id (source index × m + attempt) of the first ``limit`` sources."""
    src, index = source_sequences(dataset, cfg, model.config.max_len)
    out: dict[int, list[int]] = {}
    for j, source_index in enumerate(index[:limit]):
        s = src.row(j).tolist()
        for attempt in range(cfg.m):
            row = np.array([source_index * cfg.m + attempt])
            prefix = 1
            if cfg.prefix == "random":
                prefix = 1 + int(uniform(cfg.seed, row, 0, _PREFIX)[0] * (len(s) - 1))
            prefix = min(prefix, cfg.max_len)
            seq, pending, step = s[:prefix], False, 0
            while True:
                with torch.no_grad():
                    scores = model.score(model.last_hidden(torch.tensor([seq]), torch.tensor([len(seq)])))[0]
                if pending and math.isfinite(cfg.tau):
                    pool = s if cfg.target == "remaining" else s[prefix:]
                    targets = [t for t in pool if t not in seq]
                    best = max((scores[t] for t in targets), default=torch.tensor(-math.inf))
                    if int((scores > best).sum()) >= cfg.tau:
                        seq.pop()
                        break
                if len(seq) >= cfg.max_len:
                    break
                masked = scores.clone()
                masked[seq] = -math.inf
                if uniform(cfg.seed, row, step, _POOL)[0] < cfg.p:
                    own = [masked[t] for t in s]
                    best_i = int(torch.stack(own).argmax())
                    value, item = own[best_i], s[best_i]
                else:
                    value, item = masked.max(), int(masked.argmax())
                if not torch.isfinite(value):
                    break
                seq.append(item)
                pending, step = True, step + 1
            if len(seq) >= cfg.min_len and len(seq) > prefix:
                out[int(row[0])] = seq
    return out
