"""Secrets come only from the environment and never reach a log line or a response: after everything
the other reliability tests put the system through (faults, hostile input, wrong tokens), the DEBUG
logs of every process hold none of the API token, the services token, the S3 secret key or the Redis
password. (This module runs last: its name sorts after the others.)"""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.slow


def test_no_secret_in_any_log_or_response(system, reference):
    secrets = system.secrets.values()
    with httpx.Client(base_url=system.url, timeout=30) as http:
        for token in ("wrong", *secrets):  # wrong tokens, including the other secrets, are refused
            if token != system.secrets.api_token:
                assert http.post("/runs", json={}, headers={"Authorization": f"Bearer {token}"}).status_code == 401
        bodies = [http.get(path).text for path in ("/readyz", "/metrics", "/runs", "/datasets", "/openapi.json",
                                                   f"/runs/{reference['id']}", "/")]
    logs = system.logs()
    assert set(logs) >= {"orchestrator.log", "trainer.log", "generator-0.log", "generator-1.log"}
    assert sum(len(text) for text in logs.values()) > 10_000 and "DEBUG" in logs["orchestrator.log"]
    for name, text in [*logs.items(), *(("response", body) for body in bodies)]:
        for secret in secrets:
            assert secret not in text, f"a secret appears in {name}"
