"""Prometheus metrics of one app instance (its own registry, so that several apps can coexist).

Request counts and latencies come from a middleware keyed by the route template (``/runs/{run_id}``,
not the raw path, so that label cardinality stays bounded). Run, queue and dataset counts are read
from Redis at scrape time: Redis is the system of record, and a restarted process reports the truth.
Service calls are counted as they happen (attempts, failures by status, retries), as are resumed
runs; stages are timed whatever their outcome; the process collector adds RSS, CPU time and fds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from services.orchestrator.faults import Fault
    from services.orchestrator.store import Store


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("rsir_http_requests", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("rsir_http_request_seconds", "HTTP request latency", ["route"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
                                 registry=self.registry)
        self.stage_seconds = Histogram("rsir_stage_seconds", "Duration of run stages by how they ended "
                                       "(completed, failed, interrupted)", ["stage", "outcome"],
                                       buckets=(0.1, 1, 5, 15, 60, 300, 900, 3600, 14400), registry=self.registry)
        self.shard_attempts = Counter("rsir_generation_shard_attempts", "Generator calls made for shards "
                                      "(more than the shards: retries on another replica)", registry=self.registry)
        self.calls = Counter("rsir_service_calls", "Calls to the trainer and generators", ["service"],
                             registry=self.registry)
        self.call_failures = Counter("rsir_service_call_failures", "Failed calls to the trainer and generators, "
                                     "by gRPC status", ["service", "code"], registry=self.registry)
        self.retries = Counter("rsir_service_retries", "Failed calls tried again (transport or capacity errors)",
                               ["service"], registry=self.registry)
        self.resumes = Counter("rsir_run_resumes", "Runs taken up again at their stage: after a restart of the "
                               "orchestrator, or after Redis or the object store was out of reach", ["cause"],
                               registry=self.registry)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, _cpu_seconds_total, _open_fds
        self.generated_sequences = Counter("rsir_generated_sequences", "Synthetic sequences added to new dataset "
                                           "versions", registry=self.registry)

    def failed(self, fault: Fault) -> None:
        self.call_failures.labels(fault.service, fault.code).inc()

    def retried(self, fault: Fault) -> None:
        self.retries.labels(fault.service).inc()

    def watch(self, store: Store) -> Collector:
        """Report the store's counts at scrape time; returns the collector to unregister later."""
        collector = _StoreCollector(store)
        self.registry.register(collector)
        return collector


class MetricsMiddleware:
    """Pure ASGI middleware (not BaseHTTPMiddleware): streams such as SSE pass through untouched."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")  # the router fills scope in place
            self.metrics.requests.labels(scope["method"], template, str(status)).inc()
            self.metrics.latency.labels(template).observe(time.perf_counter() - start)


class _StoreCollector(Collector):
    def __init__(self, store: Store):
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        runs = GaugeMetricFamily("rsir_runs", "Runs by status", labels=["status"])
        for status, count in self.store.runs.count_by_status().items():
            runs.add_metric([status], count)
        yield runs
        yield GaugeMetricFamily("rsir_queue_length", "Runs waiting for a worker", value=self.store.runs.queue_length())
        yield GaugeMetricFamily("rsir_dataset_versions", "Stored dataset versions", value=self.store.versions.count())
