"""dns:///NAME:PORT in ORCHESTRATOR_GENERATOR_ADDRS: every replica behind one name."""

from __future__ import annotations

import socket

import pytest

from services.orchestrator.discovery import DiscoveryError, expand_addresses, resolve_all


def test_plain_addresses_are_kept_and_a_name_becomes_all_its_addresses():
    replicas = {"generator": ["10.0.0.7:50052", "10.0.0.5:50052"]}
    expanded = expand_addresses(["gen-a:1", "10.0.0.5:50052", "dns:///generator:50052"],
                                resolve=lambda host, port: replicas[host])
    assert expanded == ["gen-a:1", "10.0.0.5:50052", "10.0.0.7:50052"]  # a replica listed already counts once


def test_localhost_resolves_to_one_loopback_address():
    assert resolve_all("localhost", 50052) == ["127.0.0.1:50052"]


def test_a_name_that_resolves_late_is_waited_for():
    answers = iter([socket.gaierror("not yet"), [], ["10.0.0.1:7"]])

    def resolve(host, port):
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert expand_addresses(["dns:///generator:7"], resolve=resolve, interval_s=0.01) == ["10.0.0.1:7"]


@pytest.mark.parametrize("entry", ["dns:///generator", "dns:///:50052", "dns:///generator:port"])
def test_a_malformed_entry_is_named(entry):
    with pytest.raises(DiscoveryError, match="expected dns:///NAME:PORT"):
        expand_addresses([entry])


def test_a_name_that_never_resolves_fails_with_a_clear_message():
    def resolve(host, port):
        raise socket.gaierror("Name or service not known")

    with pytest.raises(DiscoveryError, match=r"'generator' did not resolve within 0 s \(Name or service not known\)"):
        expand_addresses(["dns:///generator:50052"], wait_s=0.05, resolve=resolve, interval_s=0.01)
