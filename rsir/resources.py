"""Devices and resource figures (peak memory, current memory, the machine) reported by training,
generation, the services' memory budgets and benchmarks."""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import sys
from functools import cache
from typing import Any

import torch

from rsir.errors import ConfigError

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)


@cache
def keep_freed_memory() -> bool:
    """Let glibc keep freed memory for the next allocation (once per process; True where it applies).

    glibc maps each allocation above its mmap threshold afresh and gives freed memory at the top of
    the heap back above its trim threshold; it raises both as it sees large blocks freed, but a
    process that keeps its largest tensors (the loss's logits buffer) never shows it one, and the
    tensors of a few MB that every training step makes (the item table's gradients) stay new pages
    each step, whose first touch (page faults) costs up to a sixth of a step. This sets the thresholds to
    32 MiB (glibc's largest mmap threshold) and 256 MiB. A no-op off glibc."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20))


def available_devices() -> list[str]:
    """The devices this process can run on, e.g. ``["cpu", "cuda:0"]``."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu", *(f"cuda:{i}" for i in range(count))]


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → CUDA when present, else CPU. A device this machine lacks (``cuda`` without a GPU,
    ``cuda:9`` with one) is a ``ConfigError`` naming those it has, before anything runs on it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"device: {name!r} is not a device name ({exc})") from None
    have = available_devices()
    wanted = f"cuda:{device.index or 0}" if device.type == "cuda" else device.type
    if wanted not in have:
        raise ConfigError(f"device: {name!r} does not exist here; this machine has {', '.join(have)}")
    return device


def peak_memory_mb(device: torch.device | None = None) -> float:
    """Peak memory so far: GPU allocator peak on CUDA, else the process's peak resident set."""
    if device is not None and device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def total_memory_bytes() -> int:
    """Physical memory of the machine (or of the container's cgroup limit, when lower)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    return total


def rss_bytes() -> int:
    """This process's resident set now (Linux; the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return int(peak_memory_mb() * 2**20)


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
