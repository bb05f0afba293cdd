"""Stored shard results: everything one ``Generate`` call produced, as one ``.npz`` blob.

Written once, atomically, after the last batch (only when the request names an ``output_key``), so
a reader finds the complete shard or nothing. ``read_result`` turns the blob back into one
``GeneratedBatch`` that ``rsir.generation.merge_generated`` accepts alongside the other shards.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from rsir.generation import GeneratedBatch, GenerationStats

FORMAT = "rsir-generated/1"


def result_bytes(batches: Sequence[GeneratedBatch], stats: GenerationStats, meta: dict[str, Any]) -> bytes:
    """One blob with every sequence of ``batches`` (ordered by row id), the final stats and ``meta``."""
    row_ids = np.concatenate([b.row_ids for b in batches]) if batches else np.zeros(0, np.int64)
    sequences = [s for b in batches for s in b.sequences]
    order = np.argsort(row_ids, kind="stable")
    lengths = np.array([len(sequences[i]) for i in order], dtype=np.int64)
    items = np.concatenate([sequences[i] for i in order]) if len(order) else np.zeros(0, np.int64)
    header = json.dumps({"format": FORMAT, "stats": stats.to_dict(), "meta": meta}).encode()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, row_ids=row_ids[order].astype(np.int64), lengths=lengths, items=items.astype(np.int64),
                        header=np.frombuffer(header, dtype=np.uint8))
    return buffer.getvalue()


def read_result(payload: bytes) -> tuple[GeneratedBatch, dict[str, Any]]:
    """The stored sequences as one batch, and the metadata recorded with them."""
    with np.load(io.BytesIO(payload), allow_pickle=False) as z:
        header = json.loads(bytes(z["header"]).decode())
        if header.get("format") != FORMAT:
            raise ValueError(f"not a stored generation result (format {header.get('format')!r})")
        lengths, items = z["lengths"], z["items"]
        sequences = np.split(items, np.cumsum(lengths)[:-1]) if len(lengths) else []
        return GeneratedBatch(z["row_ids"], sequences, GenerationStats(**header["stats"])), header["meta"]
