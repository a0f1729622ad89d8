"""The service's Prometheus metrics (``/metrics``): requests, latency, errors, event
batches, live sessions, the store's and the model folders' health."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sessionrec.serving.engine import Engine, folder_report
from sessionrec.serving.state import StoreUnavailable


class Metrics:
    """The service's Prometheus metrics.

    With ``multiprocess_dir`` (``serve --workers N``, N > 1) the counters and the histogram
    live in prometheus_client's multiprocess files in that folder (the variable
    ``PROMETHEUS_MULTIPROC_DIR`` names it to every worker before prometheus_client is
    imported there), and a scrape, whichever worker answers it, reads and sums every
    worker's. The live-session count is read from the shared store at scrape time; the
    per-process model steps and rebuilds are gauges each worker sets after its requests and
    a scrape sums over the live workers.
    """

    def __init__(self, engine: Engine, multiprocess_dir: str | None = None) -> None:
        self.engine = engine
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sessionrec_requests", "HTTP requests.", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "sessionrec_request_seconds",
            "Request latency (seconds), in the server.",
            ["route"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.errors = Counter("sessionrec_errors", "Error answers.", ["kind"], registry=r)
        self.batches = Histogram(
            "sessionrec_event_batch_size",
            "Session events answered together (read in the same turn of the event loop).",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.events = Counter("sessionrec_events", "Session events applied.", ["model"], registry=r)
        self._live = _LiveSessions(engine)
        r.register(self._live)
        self.rebuilds = Gauge(
            "sessionrec_state_rebuilds",
            "Streaming states rebuilt from stored events (restart, reload, eviction).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.steps = Gauge(
            "sessionrec_model_steps",
            "Model streaming steps run.",
            registry=r,
            multiprocess_mode="livesum",
        )
        # with several workers, one series per worker (label pid): how evenly they share
        self.worker_requests = Gauge(
            "sessionrec_worker_requests",
            "Requests answered by this worker process (several workers: one series each).",
            registry=r,
            multiprocess_mode="liveall",
        )
        self._answered = 0
        if multiprocess_dir is None:
            self.worker_requests.set_function(lambda: self._answered)
            self.rebuilds.set_function(lambda: engine.rebuilds)
            self.steps.set_function(lambda: engine.steps)
        # labelled children by label values: ``labels()`` looks them up under a lock
        self._requests: dict[tuple[str, str, int], Any] = {}
        self._latency: dict[str, Any] = {}
        self._errors: dict[int, Any] = {}
        self._events: dict[str, Any] = {}

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        key = (method, route, status)
        child = self._requests.get(key)
        if child is None:
            child = self._requests[key] = self.requests.labels(method, route, str(status))
        child.inc()
        hist = self._latency.get(route)
        if hist is None:
            hist = self._latency[route] = self.latency.labels(route)
        hist.observe(seconds)
        if status >= 400:
            err = self._errors.get(status)
            if err is None:
                err = self._errors[status] = self.errors.labels(str(status))
            err.inc()
        self._answered += 1
        if self.multiprocess_dir is not None:
            self.worker_requests.set(self._answered)
            self.steps.set(self.engine.steps)
            self.rebuilds.set(self.engine.rebuilds)

    def event(self, model: str) -> None:
        """Count one applied session event."""
        child = self._events.get(model)
        if child is None:
            child = self._events[model] = self.events.labels(model)
        child.inc()

    def exposition(self) -> bytes:
        """The Prometheus text of every worker's metrics."""
        if self.multiprocess_dir is None:
            return bytes(generate_latest(self.registry))
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        registry.register(self._live)
        return bytes(generate_latest(registry))


class _LiveSessions(Collector):
    """``sessionrec_live_sessions``, counted in the (shared) store when scraped."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "sessionrec_store_up", "1 when the session store answered this scrape, else 0."
        )
        yield from self.folders()
        try:
            live = self.engine.store.live(time.time())
        except StoreUnavailable:
            up.add_metric([], 0.0)
            yield up
            return
        up.add_metric([], 1.0)
        yield up
        g = GaugeMetricFamily("sessionrec_live_sessions", "Sessions active within the TTL.")
        g.add_metric([], float(live))
        yield g

    def folders(self) -> Iterator[GaugeMetricFamily]:
        g = GaugeMetricFamily(
            "sessionrec_model_folder_problems",
            "Files of a served model's folder removed or changed since it was loaded.",
            labels=["model"],
        )
        found = folder_report(self.engine)
        for name in self.engine.models:
            g.add_metric([name], float(len(found.get(name, []))))
        yield g
