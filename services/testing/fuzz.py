"""Property-based fuzzing of the orchestrator's HTTP API over real HTTP.

``fuzz_schema`` loads ``/openapi.json`` with schemathesis and, for every operation, lets Hypothesis
generate requests that fit the schema (positive) and requests that break it (negative: wrong types,
out-of-range numbers, strings off their patterns, missing fields); half the run specs name the
``synthetic`` dataset, which the schema cannot express, so that valid ones create runs.
``fuzz_uploads`` sends generated bodies (random bytes, near-valid text, CSV and JSON) to the two
upload endpoints, whose raw bodies the schema cannot describe. ``fuzz_structure`` uploads datasets
that parse but are structurally broken (``broken_datasets``: mutated offsets, counts, ids, dtypes and
catalogue sizes of a stored ``.npz``, and text files with huge or float ids); ``broken_stored`` then
reads back every stored version, which must all be valid. Every response is recorded; a server error
(5xx) or a broken connection is a failure. Used by ``tests/reliability`` (a few hundred requests) and
by ``bench/reliability.py`` (thousands).
"""

from __future__ import annotations

import collections
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import redis
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.result import Err

from rsir.datasets import SequenceDataset
from rsir.errors import DataError
from services.common.storage import ObjectStore

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


def npz_bytes(users: object, offsets: object, items: object, meta: object) -> bytes:
    """A ``.npz`` laid out like a stored dataset version, with whatever arrays and metadata it is given."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, users=np.asarray(users), offsets=np.asarray(offsets), items=np.asarray(items),
                        meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    return buffer.getvalue()


# a valid dataset: 3 real users, 1 synthetic sequence, 9 items
_USERS, _OFFSETS, _ITEMS = [1, 2, 3, 4], [0, 3, 7, 10, 12], [1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3]
_META = {"format": "rsir-dataset/1", "num_items": 9, "num_real": 3, "name": "fuzz"}


def hostile_datasets() -> dict[str, tuple[str, bytes]]:
    """Structurally broken datasets by name: (file suffix, bytes). Each must be refused at every entry."""
    def npz(**change: object) -> tuple[str, bytes]:
        parts = {"users": _USERS, "offsets": _OFFSETS, "items": _ITEMS, "meta": _META, **change}
        return ".npz", npz_bytes(parts["users"], parts["offsets"], parts["items"], parts["meta"])

    return {
        "num_real 0": npz(meta={**_META, "num_real": 0}),
        "num_real above the rows": npz(meta={**_META, "num_real": 5}),
        "num_real a float": npz(meta={**_META, "num_real": 2.5}),
        "offsets not monotonic": npz(offsets=[0, 7, 3, 10, 12]),
        "offsets not from 0": npz(offsets=[1, 3, 7, 10, 12]),
        "offsets past the items": npz(offsets=[0, 3, 7, 10, 13]),
        "an empty real row": npz(offsets=[0, 0, 7, 10, 12]),
        "a synthetic row of one item": npz(offsets=[0, 3, 7, 11, 12]),
        "catalogue of 10^12 items": npz(meta={**_META, "num_items": 10**12}),
        "item id 0": npz(items=[0, *_ITEMS[1:]]),
        "item id beyond the catalogue": npz(items=[*_ITEMS[:-1], 10]),
        "float item ids": npz(items=np.array(_ITEMS, dtype=np.float64) + 0.9),
        "duplicate user ids": npz(users=[1, 1, 3, 4]),
        "synthetic id below a real one": npz(users=[2, 3, 4, 1]),
        "2-D items": npz(items=np.array(_ITEMS).reshape(3, 4)),
        "not a zip (a .npy)": (".npz", _npy(np.arange(10))),
        "not a zip (text)": (".npz", b"1 2 3 4\n"),
        "text catalogue of 10^12 items": (".txt", b"1 1 2 1000000000000\n"),
        "text float item id": (".txt", b"1 1 1.9 3\n"),
        "text duplicate user": (".txt", b"1 1 2 3\n1 2 3 4\n"),
    }


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


@st.composite
def broken_datasets(draw: st.DrawFn) -> tuple[str, bytes]:
    """The valid dataset above with its offsets, counts, ids, dtypes or catalogue size mutated (or a named
    hostile one); some mutations leave it valid, which the server may then store."""
    what = draw(st.sampled_from(["offsets", "num_real", "num_items", "items", "users", "dtype", "named"]))
    if what == "named":
        return draw(st.sampled_from(sorted(hostile_datasets().values())))
    users, offsets, items, meta = list(_USERS), list(_OFFSETS), list(_ITEMS), dict(_META)
    big = st.one_of(st.integers(-3, 15), st.integers(-2**63, 2**63 - 1))
    if what == "offsets":
        offsets[draw(st.integers(0, len(offsets) - 1))] = draw(big)
    elif what in ("num_real", "num_items"):
        meta[what] = draw(st.one_of(big, st.floats(allow_nan=False), st.sampled_from([None, "3", True, [], 10**30])))
    elif what in ("items", "users"):
        values = items if what == "items" else users
        values[draw(st.integers(0, len(values) - 1))] = draw(big)
    else:
        return ".npz", npz_bytes(users, offsets, np.array(items, dtype=draw(st.sampled_from(["f8", "u8", "i2", "?"]))),
                                 meta)
    return ".npz", npz_bytes(users, offsets, items, meta)


def fuzz_structure(base_url: str, token: str, *, examples: int, seed_value: int = 0,
                   report: FuzzReport | None = None) -> FuzzReport:
    """Every named hostile dataset, then ``examples`` mutated ones, uploaded to ``/datasets``."""
    report = report or FuzzReport()
    label = "POST /datasets (structure)"
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token}"

        def send(case: tuple[str, bytes]) -> None:
            suffix, body = case
            try:
                response = session.post(f"{base_url}/datasets", params={"filename": f"fuzz{suffix}"}, data=body,
                                        timeout=30)
            except requests.RequestException as exc:
                report.record(label, "POST", "/datasets", None, repr(exc))
                return
            report.record(label, "POST", response.request.url or "/datasets", response.status_code, response.text)

        for case in hostile_datasets().values():
            send(case)
        _drive(broken_datasets(), send, examples, seed_value)
    return report


def broken_stored(objects: ObjectStore) -> list[str]:
    """The stored dataset versions that do not read back as valid datasets (there must be none)."""
    broken = []
    for key in objects.list("datasets/"):
        try:
            SequenceDataset.from_bytes(objects.get(key))
        except DataError as exc:
            broken.append(f"{key}: {exc}")
    return broken
