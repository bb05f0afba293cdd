"""How much memory a ``Generate`` call needs, per decoded row and for a kept shard.

A chunk of rows decodes together (``GenerationConfig.decode_rows``); its largest live tensors grow
with the rows, never with the catalogue, which is scored in blocks of bounded size. Results do
not depend on how rows are chunked (every random draw is keyed by the row id), so the servicer
lowers the chunk to what its memory budget holds instead of refusing; it refuses only when one
source sequence's ``m`` rows do not fit, or when a shard kept whole for ``output_key`` would not.
The figures are upper bounds, counted from the request, the model's shape and the dataset's size.
"""

from __future__ import annotations

from rsir.config import GenerationConfig
from rsir.models import SequentialRecommender

FLOAT, LONG = 4, 8  # bytes
ARRAY_OVERHEAD = 200  # a generated sequence's numpy array and its list slot, beyond its items
CACHE_COPIES = 2  # a context's key/value cache and the copy that selecting survivors makes


def bytes_per_row(model: SequentialRecommender, config: GenerationConfig) -> int:
    """Peak bytes one decoding row adds: its context's cache, its comparisons of the source against
    the items so far, its top-k candidates, and its finished sequence waiting to be streamed."""
    source = model.config.max_len  # a source's training view is at most the model's max_len
    length = config.max_len
    cache = model.config.layers * 2 * length * model.config.dim * FLOAT * CACHE_COPIES
    compare = source * length + source * (FLOAT + 2)  # [n, Ls, T'] bools; own scores and masks [n, Ls]
    candidates = min(config.top_k, model.num_items + 1) * (FLOAT + LONG) * 2  # the catalogue's and its own
    output = (length * LONG + ARRAY_OVERHEAD) * 3  # finished rows of chunks collected ahead of the consumer
    return cache + compare + candidates + length * LONG * 4 + output


def kept_shard_bytes(sources: int, config: GenerationConfig) -> int:
    """A whole shard held for ``output_key`` (every row at full length), and its stored copy."""
    return sources * config.m * (config.max_len * LONG * 2 + ARRAY_OVERHEAD)
