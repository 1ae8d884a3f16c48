"""Prometheus metrics (summed over all worker processes) and the access log, both fed once per
request by Tornado's log_function.

Under run.py, PROMETHEUS_MULTIPROC_DIR is set before this module is imported, so every worker
writes its samples to files there and /metrics adds them up.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from tornado.web import RequestHandler

from .store import Store

log = logging.getLogger("storage_server")
access = logging.getLogger("storage_server.access")

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR" in os.environ
DURATIONS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

REQUESTS = Counter("storage_requests_total", "Requests answered.", ["method", "route", "status"])
RECEIVED = Counter("storage_received_bytes_total", "Request body bytes received.", ["route"])
SENT = Counter("storage_sent_bytes_total", "Response body bytes sent.", ["route"])
UPLOADS = Histogram(
    "storage_upload_duration_seconds", "Time to receive and store an upload.", buckets=DURATIONS
)
DOWNLOADS = Histogram("storage_download_duration_seconds", "Time to stream a download.", buckets=DURATIONS)
IN_FLIGHT = Gauge(
    "storage_requests_in_flight", "Requests begun and not yet answered.", multiprocess_mode="livesum"
)


class FreeSpace(Collector):
    """Free bytes on the storage path's filesystem, read at scrape time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        value: float | None
        try:
            value = self.store.free_bytes()
        except OSError:
            value = float("nan")
        if value is not None:  # an object store does not say
            free = GaugeMetricFamily("storage_free_bytes", "Bytes free for uploads on the storage path.")
            free.add_metric([], float(value))
            yield free


def render(store: Store) -> bytes:
    """The exposition text of every metric, summed over the workers when there are several."""
    registry = CollectorRegistry()
    if MULTIPROCESS:
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for collector in (REQUESTS, RECEIVED, SENT, UPLOADS, DOWNLOADS, IN_FLIGHT):
            registry.register(collector)
    registry.register(FreeSpace(store))
    return generate_latest(registry)


def forget(pids: Iterable[int]) -> None:
    """Drop the live gauges of worker processes that died."""
    if MULTIPROCESS:
        for pid in pids:
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def set_in_flight(count: int) -> None:
    try:
        IN_FLIGHT.set(count)
    except OSError:
        log.exception("cannot update the in-flight gauge")


def record(handler: RequestHandler, log_format: str) -> None:
    """Count one finished request and write its access log line."""
    request = handler.request
    status = handler.get_status()
    route = getattr(handler, "route", "unmatched")
    seconds = request.request_time()
    bytes_in = getattr(handler, "bytes_in", 0)
    bytes_out = getattr(handler, "bytes_out", 0)
    try:
        REQUESTS.labels(request.method, route, str(status)).inc()
        if bytes_in:
            RECEIVED.labels(route).inc(bytes_in)
        if bytes_out:
            SENT.labels(route).inc(bytes_out)
        if route.startswith("/api/v1/files/") and status < 300:
            (UPLOADS if request.method in ("POST", "PUT") else DOWNLOADS).observe(seconds)
    except OSError:
        log.exception("cannot update the request metrics")
    level = logging.INFO if status < 500 else logging.ERROR
    if log_format == "off" or not access.isEnabledFor(level):
        return
    if log_format == "json":
        line = json.dumps(
            {
                "method": request.method,
                "route": route,
                "path": request.path,
                "status": status,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "duration_ms": round(seconds * 1000, 2),
                "worker": os.getpid(),
            }
        )
        access.log(level, "%s", line)
    else:
        access.log(
            level,
            "%s %s %d in=%d out=%d %.1fms worker=%d route=%s",
            request.method,
            request.path,
            status,
            bytes_in,
            bytes_out,
            seconds * 1000,
            os.getpid(),
            route,
        )
