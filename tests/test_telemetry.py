"""Prometheus metrics (summed over workers) and the access log."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storage_server.blobfs import BlobStore
from storage_server.settings import Settings
from tests.conftest import Api
from tests.service import ROOT, Service, children


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus exposition text (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.fullmatch(r"(\w+)(?:\{(.*)\})? (\S+)", line)
        if match and match.group(1) == name and ",".join(sorted((match.group(2) or "").split(","))) == want:
            return float(match.group(3))
    return 0.0


async def test_metrics_count_requests_bytes_and_durations(api: Api, store: BlobStore) -> None:
    store.create_bucket("photos", public=False, description=None)
    before = (await api.request("GET", "/metrics")).body.decode()
    await api.upload("photos", "a.bin", b"x" * 1000)
    await api.request("GET", "/api/v1/files/photos/a.bin")
    await api.request("GET", "/api/v1/files/photos/missing")
    text = (await api.request("GET", "/metrics")).body.decode()
    route = "/api/v1/files/{bucket}/{path}"

    def grew(name: str, **labels: str) -> float:
        return sample(text, name, **labels) - sample(before, name, **labels)

    assert grew("storage_requests_total", method="POST", route=route, status="201") == 1
    assert grew("storage_requests_total", method="GET", route=route, status="200") == 1
    assert grew("storage_requests_total", method="GET", route=route, status="404") == 1
    assert grew("storage_received_bytes_total", route=route) == 1000
    assert grew("storage_sent_bytes_total", route=route) >= 1000
    assert grew("storage_upload_duration_seconds_count") == 1
    assert grew("storage_download_duration_seconds_count") == 1
    assert sample(text, "storage_requests_in_flight") == 1  # the scrape itself
    assert sample(text, "storage_free_bytes") == pytest.approx(store.free_bytes(), rel=0.01)


async def test_access_log_line_has_method_route_status_bytes_duration_worker(
    api: Api, store: BlobStore, caplog: pytest.LogCaptureFixture
) -> None:
    store.create_bucket("photos", public=False, description=None)
    with caplog.at_level(logging.INFO, logger="storage_server.access"):
        await api.upload("photos", "a.bin", b"x" * 42)
    line = next(r.getMessage() for r in caplog.records if r.name == "storage_server.access")
    assert line.startswith("POST /api/v1/files/photos/a.bin 201 in=42 out=")
    assert f"worker={os.getpid()}" in line
    assert "route=/api/v1/files/{bucket}/{path}" in line
    assert re.search(r" \d+\.\dms ", line)


async def test_access_log_can_be_json(
    api: Api, config: Settings, store: BlobStore, caplog: pytest.LogCaptureFixture
) -> None:
    object.__setattr__(config, "access_log", "json")
    with caplog.at_level(logging.INFO, logger="storage_server.access"):
        await api.request("GET", "/api/v1/buckets/missing")
    entry = json.loads(next(r.getMessage() for r in caplog.records if r.name == "storage_server.access"))
    assert entry["method"] == "GET"
    assert entry["route"] == "/api/v1/buckets/{bucket}"
    assert entry["status"] == 404
    assert entry["bytes_out"] > 0
    assert entry["worker"] == os.getpid()
    assert entry["duration_ms"] >= 0


def test_metrics_are_summed_over_all_workers(start: type[Service]) -> None:
    service = start("--workers", "2", "--access-log", "off")
    service.wait_ready(workers=2)
    health = {"method": "GET", "route": "/health", "status": "200"}
    before = sample(service.request("GET", "/metrics")[1].decode(), "storage_requests_total", **health)
    for _ in range(40):  # a new connection each: the kernel spreads them over both workers
        assert service.request("GET", "/health")[0] == 200
    text = service.request("GET", "/metrics")[1].decode()
    assert sample(text, "storage_requests_total", **health) - before == 40

    os.kill(children(service.proc.pid)[0], signal.SIGKILL)  # its counts stay; its live gauge goes
    deadline = time.monotonic() + 10
    while len(children(service.proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    text = service.request("GET", "/metrics")[1].decode()
    assert sample(text, "storage_requests_total", **health) - before == 40
    assert sample(text, "storage_requests_in_flight") == 1


def test_metrics_storage_is_chosen_explicitly_before_prometheus_client_loads(tmp_path: Path) -> None:
    """run.py chooses multi-process metrics before the fork; choosing after prometheus_client
    was loaded (when it has already picked its storage) is refused, not silently wrong."""
    script = (
        "import sys\n"
        "from storage_server import telemetry\n"
        "assert 'prometheus_client' not in sys.modules\n"
        f"telemetry.setup({str(tmp_path)!r})\n"
        "telemetry.metrics().requests.labels('GET', '/x', '200').inc()\n"
        "import prometheus_client.values as v\n"
        "print(v.ValueClass.__name__)\n"
    )
    good = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert good.returncode == 0, good.stderr
    assert good.stdout.strip() != "MutexValue"  # the file-backed, multi-process value
    assert list(tmp_path.glob("*.db"))
    late = "import prometheus_client\nfrom storage_server import telemetry\ntelemetry.setup('/nonexistent')\n"
    refused = subprocess.run(
        [sys.executable, "-c", late], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert refused.returncode != 0
    assert "telemetry.setup must run before any metric exists" in refused.stderr
