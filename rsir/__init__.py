"""rsir: recursive self-improving sequential recommendation (the core library).

The library holds the whole algorithm — data, backbones, training, evaluation, generation and the
recursive loop — and imports no service framework; the gRPC and HTTP services wrap it.
"""

__version__ = "0.1.0"
