"""Devices and resource figures (peak memory, the machine) reported by training, generation and benchmarks."""

from __future__ import annotations

import os
import platform
import resource
import sys
from typing import Any

import torch


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def peak_memory_mb(device: torch.device | None = None) -> float:
    """Peak memory so far: GPU allocator peak on CUDA, else the process's peak resident set."""
    if device is not None and device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def machine() -> dict[str, Any]:
    """What a result was measured on (CPU, cores, torch threads, GPU, versions): timings and peak
    memory mean little without it, so every benchmark stores it beside its numbers."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
