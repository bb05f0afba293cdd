"""Generator replicas behind one DNS name.

An entry ``dns:///NAME:PORT`` in ``ORCHESTRATOR_GENERATOR_ADDRS`` stands for every address ``NAME``
resolves to: compose's service name after ``docker compose up --scale generator=N``, or a Kubernetes
headless Service. The name is resolved once, when the orchestrator starts, so restart it after
changing the number of replicas (runs resume at their stage). Plain ``host:port`` entries are kept
as they are. IPv4 addresses are preferred, so that a dual-stack replica is not counted twice.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)
SCHEME = "dns:///"
Resolver = Callable[[str, int], list[str]]


class DiscoveryError(RuntimeError):
    """A ``dns:///`` entry is malformed or its name never resolved."""


def resolve_all(host: str, port: int) -> list[str]:
    """Every address of ``host`` as sorted ``ip:port`` strings (IPv4 when it has any, else IPv6)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    v4 = sorted({info[4][0] for info in infos if info[0] == socket.AF_INET})
    if v4:
        return [f"{ip}:{port}" for ip in v4]
    return [f"[{ip}]:{port}" for ip in sorted({info[4][0] for info in infos if info[0] == socket.AF_INET6})]


def expand_addresses(addresses: list[str], *, wait_s: float = 120.0, resolve: Resolver = resolve_all,
                     interval_s: float = 2.0) -> list[str]:
    """``addresses`` with each ``dns:///NAME:PORT`` entry replaced by all the addresses of NAME.

    A name that does not resolve yet (its replicas are still starting) is retried for ``wait_s``.
    """
    expanded: list[str] = []
    for entry in addresses:
        if not entry.startswith(SCHEME):
            expanded.append(entry)
            continue
        host, _, port = entry[len(SCHEME):].rpartition(":")
        if not host or not port.isdigit():
            raise DiscoveryError(f"{entry!r}: expected dns:///NAME:PORT")
        found = _wait_for(host, int(port), wait_s, resolve, interval_s)
        logger.info("%s resolves to %d generator replica(s): %s", entry, len(found), ", ".join(found))
        expanded.extend(a for a in found if a not in expanded)
    return expanded


def _wait_for(host: str, port: int, wait_s: float, resolve: Resolver, interval_s: float) -> list[str]:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            found = resolve(host, port)
        except OSError as exc:  # socket.gaierror: the name is not known (yet)
            found, reason = [], str(exc)
        else:
            reason = "no address"
        if found:
            return found
        if time.monotonic() >= deadline:
            raise DiscoveryError(f"generator name {host!r} did not resolve within {wait_s:.0f} s ({reason}); "
                                 "are the generator replicas running?")
        time.sleep(interval_s)
