"""The generator service: ``Generate`` streams fidelity-filtered synthetic sequences for one shard
of a stored dataset, from a cached checkpoint (``python -m services.generator``)."""
