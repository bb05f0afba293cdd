"""Property-based fuzzing of the orchestrator's HTTP API over real HTTP.

``fuzz_schema`` loads ``/openapi.json`` with schemathesis and, for every operation, lets Hypothesis
generate requests that fit the schema (positive) and requests that break it (negative: wrong types,
out-of-range numbers, strings off their patterns, missing fields); half the run specs name the
``synthetic`` dataset, which the schema cannot express, so that valid ones create runs.
``fuzz_uploads`` sends generated bodies (random bytes, near-valid text, CSV and JSON) to the two
upload endpoints, whose raw bodies the schema cannot describe. Every response is recorded; a server
error (5xx) or a broken connection is a failure. Used by ``tests/reliability`` (a few hundred
requests) and by ``bench/reliability.py`` (thousands).
"""

from __future__ import annotations

import collections
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import redis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Err

# answers that are right although 5xx: not ready, since this orchestrator's services are down on purpose
EXPECTED = {("GET /readyz", 503)}
UPLOADS = (("/datasets", (".txt", ".csv", ".tsv", ".inter", ".npz", ".parquet")), ("/checkpoints", ("",)))


@dataclass
class FuzzReport:
    """What the fuzzer sent and got back."""

    requests: int = 0
    statuses: collections.Counter = field(default_factory=collections.Counter)
    operations: collections.Counter = field(default_factory=collections.Counter)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def record(self, operation: str, method: str, url: str, status: int | None, detail: str = "") -> None:
        self.requests += 1
        self.operations[operation] += 1
        self.statuses[str(status)] += 1
        if status is None or (status >= 500 and (operation, status) not in EXPECTED):
            self.failures.append({"operation": operation, "method": method, "url": url[:300], "status": status,
                                  "detail": detail[:300]})

    def to_json(self) -> dict[str, Any]:
        return {"requests": self.requests, "server_errors": len(self.failures), "statuses": dict(self.statuses),
                "operations": dict(self.operations), "failures": self.failures[:20]}


def _drive(strategy: st.SearchStrategy, send: Callable[[Any], None], examples: int, seed_value: int) -> None:
    """Call ``send`` on ``examples`` values drawn from ``strategy``, reproducibly (no shrinking)."""
    @seed(seed_value)
    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value: Any) -> None:
        send(value)

    run()


def fuzz_schema(base_url: str, token: str, *, examples: int, seed_value: int = 0,
                report: FuzzReport | None = None) -> FuzzReport:
    """``examples`` positive and ``examples`` negative requests per operation of the OpenAPI schema
    (fewer when an operation has fewer distinct inputs). SSE is read with a short timeout."""
    report = report or FuzzReport()
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    session = requests.Session()
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"

        def send(case: schemathesis.Case, label: str = label) -> None:
            if label == "POST /runs" and isinstance(case.body, dict) and report.operations[label] % 2:
                case.body["dataset"] = "synthetic"  # the schema says only "string": let half the specs get far
            try:
                response = case.call(base_url=base_url, session=session, timeout=(5, 2))
            except requests.ReadTimeout:  # an open event stream: the server answered and keeps it open
                report.record(label, case.method, case.formatted_path, 200)
                return
            except requests.RequestException as exc:
                report.record(label, case.method, case.formatted_path, None, repr(exc))
                return
            report.record(label, case.method, response.request.url or "", response.status_code, response.text)

        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            # the token is fixed, or nearly every generated request would stop at the 401
            strategy = operation.as_strategy(generation_mode=mode, headers={"authorization": f"Bearer {token}"})
            try:
                _drive(strategy, send, examples, seed_value)
            except Unsatisfiable:  # no input of this operation can break its schema (GET /healthz)
                assert mode is GenerationMode.NEGATIVE, operation.label
    session.close()
    return report


def _numbers_text(draw: st.DrawFn) -> bytes:
    """Lines of ``user item item ...`` with hostile numbers: negative, huge, non-numeric, empty."""
    number = st.one_of(st.integers(-5, 60), st.integers(-2**80, 2**80), st.sampled_from(["x", "", "1e9", "nan"]))
    lines = draw(st.lists(st.lists(number, min_size=0, max_size=8), min_size=0, max_size=30))
    separator = draw(st.sampled_from([" ", ",", "\t"]))
    return "\n".join(separator.join(map(str, line)) for line in lines).encode()


@st.composite
def upload_bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "numbers", "csv", "json"]))
    if kind == "bytes":
        return draw(st.binary(max_size=4096))
    if kind == "numbers":
        return _numbers_text(draw)
    if kind == "csv":
        return b"user,item,timestamp\n" + _numbers_text(draw)
    depth = draw(st.integers(1, 5000))
    return b"[" * depth + b"]" * depth


def fuzz_uploads(base_url: str, token: str, *, examples: int, seed_value: int = 0,
                 report: FuzzReport | None = None) -> FuzzReport:
    """``examples`` generated bodies per upload endpoint and file suffix."""
    report = report or FuzzReport()
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token}"
        for path, suffixes in UPLOADS:
            for suffix in suffixes:
                label = f"POST {path} ({suffix or 'checkpoint'})"
                params = {"filename": f"fuzz{suffix}", "k_core": 0} if suffix else {}

                def send(body: bytes, path: str = path, params: dict = params, label: str = label) -> None:
                    try:
                        response = session.post(f"{base_url}{path}", params=params, data=body, timeout=30)
                    except requests.RequestException as exc:
                        report.record(label, "POST", path, None, repr(exc))
                        return
                    report.record(label, "POST", response.request.url or path, response.status_code, response.text)

                _drive(upload_bodies(), send, examples, seed_value)
    return report


def run_outcomes(redis_url: str, prefix: str) -> dict[str, int]:
    """How the runs a fuzzer created ended: ``status`` or ``status: <stage>: <cause>`` (the error's first
    two ``": "``-separated parts, without details such as a connection error's text)."""
    client = redis.Redis.from_url(redis_url)
    # without decode_responses Redis answers bytes, which redis-py's types leave as bytes | str
    ids = [i.decode() for i in cast(list[bytes], client.zrange(f"{prefix}:runs", 0, -1))]
    docs = [json.loads(d) for d in cast(list[bytes], client.mget([f"{prefix}:run:{i}" for i in ids]))] if ids else []
    client.close()
    return dict(collections.Counter(d["status"] + (": " + ": ".join(d["error"].split(": ")[:2]) if d["error"] else "")
                                    for d in docs))
