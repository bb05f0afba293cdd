"""Which floating-point type training computes in.

bf16 halves the bytes every matrix product and its logits move, and CPUs with native bf16
dot products (AVX512-BF16, AMX) or CUDA GPUs run those products at least twice as fast as fp32.
Master weights, the optimiser state, layer norms and the softmax's reductions stay in fp32
(autocast's rules), so accuracy is held (bench/train_speed.py measures both, paired). CPUs without
native bf16 would emulate it at a loss, so ``auto`` keeps fp32 there.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions (Linux's /proc/cpuinfo flags)."""
    try:
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def compute_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype of the encoder's and the loss's matrix products for ``precision`` on ``device``:
    ``auto`` is bf16 where the hardware runs it natively, else fp32."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else torch.float32
