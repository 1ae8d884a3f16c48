"""The side-by-side measurements of benchmarks/bench.py: big transfers, small requests under wrk,
time to first byte, fairness between big and small requests, worker memory while data moves."""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import statistics
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

from benchmarks.servers import GiB, MiB, Server, Storage, cpu, peak_rss_growth, request

CURL_FORMAT = (
    '{"up": %{speed_upload}, "down": %{speed_download}, "ttfb": %{time_starttransfer}, "code": %{http_code}}'
)


def curl(*args: str) -> dict[str, float]:
    """Run curl and return its -w figures (speed_upload, speed_download, time_starttransfer)."""
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", CURL_FORMAT, *args], capture_output=True, check=True
    )
    figures: dict[str, float] = json.loads(out.stdout)
    return figures


def fresh_upload(server: Server, name: str) -> None:
    """Start every upload from the same state: the previous copy gone, dirty pages written."""
    request(server, "DELETE", name)
    os.sync()


def tus_upload(server: Storage, big: Path, chunk: int = 8 * MiB) -> float:
    """MB/s of one upload of `big` through the tus endpoint, `chunk` bytes per PATCH."""
    size = big.stat().st_size
    name = base64.b64encode(f"tus-{time.monotonic_ns()}.bin".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
    headers = {"Tus-Resumable": "1.0.0", **server.headers}
    start = time.monotonic()
    conn.request(
        "POST",
        "/api/v1/upload/resumable",
        headers={
            **headers,
            "Upload-Length": str(size),
            "Upload-Metadata": f"bucketName YmVuY2g=,objectName {name}",
        },
    )
    created = conn.getresponse()
    created.read()
    assert created.status == 201, created.status
    location = urllib.parse.urlsplit(created.headers["Location"]).path
    with big.open("rb") as source:
        offset = 0
        while offset < size:
            body = source.read(chunk)
            patch = {"Content-Type": "application/offset+octet-stream", "Upload-Offset": str(offset)}
            conn.request("PATCH", location, body=body, headers={**headers, **patch})
            answer = conn.getresponse()
            answer.read()
            assert answer.status == 204, answer.status
            offset += len(body)
    conn.close()
    return size / (time.monotonic() - start) / 1e6


def transfers(server: Server, big: Path, results: dict[str, Any]) -> None:
    size_gib = big.stat().st_size / GiB
    fresh_upload(server, "big.bin")
    with cpu(server, results, "cpu_upload"):
        up = curl("-T", str(big), server.url("big.bin"))
    assert up["code"] in (200, 201, 204), up
    results["upload_raw_mbps"] = up["up"] / 1e6
    with cpu(server, results, "cpu_download"):
        down = curl(server.url("big.bin"))
    assert down["code"] == 200, down
    results["download_mbps"] = down["down"] / 1e6
    results["cpu_s_per_gib_up"] = results.pop("cpu_upload") / size_gib
    results["cpu_s_per_gib_down"] = results.pop("cpu_download") / size_gib
    if isinstance(server, Storage):
        fresh_upload(server, "mp.bin")
        multipart = curl("-F", f"file=@{big}", server.url("mp.bin"))
        assert multipart["code"] == 201, multipart
        results["upload_multipart_mbps"] = multipart["up"] / 1e6


def ttfb(server: Server, name: str, clients: int, per_client: int) -> dict[str, float]:
    times: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for _ in range(per_client):
            began = time.perf_counter()
            conn.request("GET", f"{server.prefix}{name}")
            response = conn.getresponse()
            response.read(1)
            first = time.perf_counter() - began
            response.read()
            with lock:
                times.append(first)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {
        "ttfb_p50_ms": percentile(times, 0.5) * 1000,
        "ttfb_p99_ms": percentile(times, 0.99) * 1000,
    }


def wrk(server: Server, seconds: int, url: str, script: Path | None = None) -> dict[str, float]:
    args = ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency"]
    for name, value in server.headers.items():
        args += ["-H", f"{name}: {value}"]
    if script is not None:
        args += ["-s", str(script)]
    with_cpu: dict[str, float] = {}
    with cpu(server, with_cpu, "cpu"):
        out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec")))
    requests = int(next(line.split()[0] for line in out.splitlines() if "requests in" in line))
    p99 = next(line.split()[1] for line in out.splitlines() if line.strip().startswith("99%"))
    errors = sum(int(n) for line in out.splitlines() if "Non-2xx" in line for n in line.split()[-1:])
    return {
        "rps": rps,
        "p99_ms": _ms(p99),
        "cpu_ms_per_request": with_cpu["cpu"] * 1000 / max(requests, 1),
        "non_2xx": errors,
    }


def _ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def put_script(tmp: Path, server: Server, size: int) -> Path:
    script = tmp / f"put-{server.name}-{size}.lua"
    script.write_text(
        f"""local body = string.rep("x", {size})
local counter = 0
request = function()
    counter = (counter + 1) % 1000
    return wrk.format("PUT", "{server.prefix}up-" .. counter .. ".bin", nil, body)
end
"""
    )
    return script


def small_gets_during(server: Server, name: str, work: list[list[str]]) -> dict[str, float]:
    """p99 of small GETs while the `work` curl commands (a big download, a big upload) run."""
    procs = [
        subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", CURL_FORMAT, *args], stdout=subprocess.PIPE)
        for args in work
    ]
    latencies: list[float] = []
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    while not latencies or any(p.poll() is None for p in procs):  # one sample at least
        began = time.perf_counter()
        conn.request("GET", f"{server.prefix}{name}")
        conn.getresponse().read()
        latencies.append(time.perf_counter() - began)
    conn.close()
    download = json.loads(procs[0].communicate()[0])
    for proc in procs[1:]:
        proc.communicate()
    return {
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "samples": len(latencies),
        "download_mbps": download["down"] / 1e6,
    }


def fairness(server: Server, big: Path, with_upload: bool) -> dict[str, float]:
    """Small GETs timed while the big file downloads (and, `with_upload`, a big upload runs too)."""
    work = [[server.url("big.bin")]]
    if with_upload:
        fresh_upload(server, "fair-up.bin")
        work.append(["-T", str(big), server.url("fair-up.bin")])
    started = time.perf_counter()
    figures = small_gets_during(server, "4k.bin", work)
    figures["elapsed_s"] = time.perf_counter() - started
    return figures


def memory(server: Storage, size: int) -> dict[str, float]:
    def upload() -> None:
        with subprocess.Popen(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE) as source:
            subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-T", "-", server.url("mem.bin")],
                stdin=source.stdout,
                check=True,
            )

    def download() -> None:
        subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "--limit-rate", "400M", server.url("mem.bin")], check=True
        )

    return {
        "rss_growth_upload_mib": peak_rss_growth(server, upload),
        "rss_growth_download_mib": peak_rss_growth(server, download),
    }


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0 < q <= 1) of `values` by the nearest-rank method."""
    ranked = sorted(values)
    return ranked[max(0, min(len(ranked), math.ceil(q * len(ranked))) - 1)]


def median_spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}
