"""Helpers every suite that runs real processes shares: free loopback ports and polling."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from services.testing.stack import free_ports as free_ports  # re-exported: the suites import it from here


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return result
