"""Prometheus metrics (summed over all worker processes) and the access log, both fed once per
request by Tornado's log_function.

prometheus_client picks its single- or multi-process storage when it is first imported, from
PROMETHEUS_MULTIPROC_DIR. So the choice is made here, once, by `setup` (run.py calls it before
forking the workers, so every worker writes its samples to files there and /metrics adds them
up); prometheus_client is imported only then, and `setup` refuses to run after that.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

from tornado.web import RequestHandler

from .store.contract import Store

log = logging.getLogger("storage_server")
access = logging.getLogger("storage_server.access")

DURATIONS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    """The service's metrics, made once prometheus_client's storage is chosen."""

    def __init__(self, multiprocess_dir: str | None) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.multiprocess = multiprocess_dir is not None
        self.requests = Counter("storage_requests_total", "Requests answered.", ["method", "route", "status"])
        self.received = Counter("storage_received_bytes_total", "Request body bytes received.", ["route"])
        self.sent = Counter("storage_sent_bytes_total", "Response body bytes sent.", ["route"])
        self.uploads = Histogram(
            "storage_upload_duration_seconds", "Time to receive and store an upload.", buckets=DURATIONS
        )
        self.downloads = Histogram(
            "storage_download_duration_seconds", "Time to stream a download.", buckets=DURATIONS
        )
        self.in_flight = Gauge(
            "storage_requests_in_flight", "Requests begun and not yet answered.", multiprocess_mode="livesum"
        )
        self.scrub_files = Counter(
            "storage_scrub_files_verified_total", "Files a background scrub re-read and checked."
        )
        self.scrub_bytes = Counter(
            "storage_scrub_bytes_verified_total", "Bytes of the files a background scrub checked."
        )
        self.scrub_damaged = Counter(
            "storage_scrub_damaged_files_total",
            "Damaged files found, by a background scrub or a verified read (X-Verify).",
            ["found_by"],
        )
        self.scrub_last_pass = Gauge(
            "storage_scrub_last_complete_pass_timestamp_seconds",
            "When the store's last complete scrub pass ended (Unix time; 0: never).",
            multiprocess_mode="max",
        )

    def all(self) -> tuple[Any, ...]:
        return (
            self.requests,
            self.received,
            self.sent,
            self.uploads,
            self.downloads,
            self.in_flight,
            self.scrub_files,
            self.scrub_bytes,
            self.scrub_damaged,
            self.scrub_last_pass,
        )


_metrics: Metrics | None = None


def setup(multiprocess_dir: str | None) -> None:
    """Choose where metrics live: files in `multiprocess_dir`, summed over every process that
    shares it, or (None) this process's memory. Call it once, before prometheus_client is
    imported by anything; raise RuntimeError otherwise."""
    global _metrics
    if _metrics is not None or (multiprocess_dir is not None and "prometheus_client" in sys.modules):
        raise RuntimeError("telemetry.setup must run before any metric exists")
    if multiprocess_dir is not None:
        os.environ[ENV] = multiprocess_dir
    else:
        os.environ.pop(ENV, None)
    _metrics = Metrics(multiprocess_dir)


def metrics() -> Metrics:
    """The metrics; in-process ones if setup was never called (a server made in a test)."""
    if _metrics is None:
        setup(os.environ.get(ENV))
    assert _metrics is not None
    return _metrics


def _free_space(store: Store) -> Any:
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector

    class FreeSpace(Collector):
        """Free bytes on the storage path's filesystem, read at scrape time."""

        def collect(self) -> Iterator[Any]:
            value: float | None
            try:
                value = store.free_bytes()
            except OSError:
                value = float("nan")
            if value is not None:  # an object store does not say
                free = GaugeMetricFamily("storage_free_bytes", "Bytes free for uploads on the storage path.")
                free.add_metric([], float(value))
                yield free

    return FreeSpace()


def render(store: Store) -> bytes:
    """The exposition text of every metric, summed over the workers when there are several."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    registry = CollectorRegistry()
    if metrics().multiprocess:
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for collector in metrics().all():
            registry.register(collector)
    registry.register(_free_space(store))
    return generate_latest(registry)


def forget(pids: Iterable[int]) -> None:
    """Drop the live gauges of worker processes that died."""
    if metrics().multiprocess:
        from prometheus_client import multiprocess

        for pid in pids:
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def set_in_flight(count: int) -> None:
    try:
        metrics().in_flight.set(count)
    except OSError:
        log.exception("cannot update the in-flight gauge")


def scrub_verified(size: int) -> None:
    """Count one file (of `size` bytes) a background scrub verified."""
    try:
        metrics().scrub_files.inc()
        metrics().scrub_bytes.inc(size)
    except OSError:
        log.exception("cannot update the scrub metrics")


def scrub_damaged(found_by: str) -> None:
    """Count one damaged file, found by "scrub" or "read"."""
    try:
        metrics().scrub_damaged.labels(found_by).inc()
    except OSError:
        log.exception("cannot update the scrub metrics")


def scrub_pass_completed(timestamp: float) -> None:
    """The store's last complete scrub pass ended at `timestamp` (Unix time)."""
    try:
        metrics().scrub_last_pass.set(timestamp)
    except OSError:
        log.exception("cannot update the scrub metrics")


def record(handler: RequestHandler, log_format: str) -> None:
    """Count one finished request and write its access log line."""
    request = handler.request
    status = handler.get_status()
    route = getattr(handler, "route", "unmatched")
    seconds = request.request_time()
    bytes_in = getattr(handler, "bytes_in", 0)
    bytes_out = getattr(handler, "bytes_out", 0)
    key = getattr(handler, "key_id", None)  # the key's id, never its secret
    m = metrics()
    try:
        m.requests.labels(request.method, route, str(status)).inc()
        if bytes_in:
            m.received.labels(route).inc(bytes_in)
        if bytes_out:
            m.sent.labels(route).inc(bytes_out)
        if route.startswith("/api/v1/files/") and status < 300:
            (m.uploads if request.method in ("POST", "PUT") else m.downloads).observe(seconds)
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
                "key": key,
            }
        )
        access.log(level, "%s", line)
    else:
        access.log(
            level,
            "%s %s %d in=%d out=%d %.1fms worker=%d route=%s key=%s",
            request.method,
            request.path,
            status,
            bytes_in,
            bytes_out,
            seconds * 1000,
            os.getpid(),
            route,
            key or "-",
        )
