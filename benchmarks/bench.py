"""storage_server side by side with nginx, on the same files, in one run (README "Performance").

    make bench                                          # full run: 1 GiB files, 3 rounds, 5 GiB memory runs
    python benchmarks/bench.py --smoke --json out.json  # a few MiB, one round (what CI runs)

Starts both servers on free 127.0.0.1 ports (nginx and wrk come from Debian's packages when
missing), alternates them round by round, prints one table and writes the raw results as JSON.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from run import children  # noqa: E402
from tests.service import free_port  # noqa: E402

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Scale:
    big: int  # the large file, up and down
    memory: int  # bytes moved each way while RSS is watched
    rounds: int
    wrk_seconds: int
    ttfb_requests: int  # per client, 20 clients


FULL = Scale(big=GiB, memory=5 * GiB, rounds=3, wrk_seconds=10, ttfb_requests=50)
SMOKE = Scale(big=8 * MiB, memory=32 * MiB, rounds=1, wrk_seconds=2, ttfb_requests=5)


def ensure_tools() -> None:
    missing = [tool for tool in ("nginx", "wrk", "curl") if shutil.which(tool) is None]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def make_file(path: Path, size: int) -> Path:
    block = os.urandom(MiB)
    with path.open("wb") as out:
        left = size
        while left > 0:
            left -= out.write(block[: min(left, MiB)])
    return path


class Server:
    name = ""
    prefix = ""  # URL path of the files

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.proc: subprocess.Popen[bytes]
        self.headers: dict[str, str] = {}  # sent with every request (a key, when the server has keys)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}{name}"

    def workers(self) -> list[int]:
        return children(self.proc.pid)

    def wait(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/")
                conn.getresponse().read()
                return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Storage(Server):
    name = "storage_server"
    prefix = "/api/v1/files/bench/"

    def __init__(
        self,
        tmp: Path,
        workers: int,
        fsync: bool,
        env: dict[str, str] | None = None,
        api_key: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        super().__init__(tmp)
        data = tmp / "storage"
        args = [
            "--workers",
            str(workers),
            "--port",
            str(self.port),
            "--path",
            str(data),
            "--access-log",
            "off",
        ]
        args += ["--log-level", "WARNING", "--fsync" if fsync else "--no-fsync", *extra]
        if api_key is not None:  # a service with keys: every request carries one
            keys = tmp / "keys.toml"
            keys.parent.mkdir(parents=True, exist_ok=True)
            keys.write_text(f'[[keys]]\nid = "bench"\nsecret = "{api_key}"\naccess = "admin"\n')
            keys.chmod(0o600)
            args += ["--keys-file", str(keys)]
            self.headers = {"X-API-Key": api_key}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), *args],
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.wait()
        conn = http.client.HTTPConnection("127.0.0.1", self.port)
        conn.request("POST", "/api/v1/buckets", body=b'{"name": "bench"}', headers=self.headers)
        conn.getresponse().read()


class Nginx(Server):
    name = "nginx"
    prefix = "/"

    def __init__(self, tmp: Path, workers: int) -> None:
        super().__init__(tmp)
        prefix = tmp / "nginx"
        for sub in ("www", "body", "logs"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(
            f"""user root;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_max_body_size 0;
    client_body_temp_path {prefix}/body;
    server {{
        listen 127.0.0.1:{self.port};
        root {prefix}/www;
        location / {{
            dav_methods PUT DELETE;
            create_full_put_path on;
        }}
    }}
}}
"""
        )
        (prefix / "www" / "index.html").write_text("ok")
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"], start_new_session=True
        )
        self.wait()


def request(server: Server, method: str, name: str, body: bytes | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request(method, f"{server.prefix}{name}", body=body, headers=server.headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


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


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


@contextlib.contextmanager
def cpu(server: Server, into: dict[str, float], key: str) -> Iterator[None]:
    before = cpu_seconds(server.workers())
    yield
    into[key] = cpu_seconds(server.workers()) - before


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
    times.sort()
    return {
        "ttfb_p50_ms": times[len(times) // 2] * 1000,
        "ttfb_p99_ms": times[int(len(times) * 0.99) - 1] * 1000,
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
    while any(p.poll() is None for p in procs):
        began = time.perf_counter()
        conn.request("GET", f"{server.prefix}{name}")
        conn.getresponse().read()
        latencies.append(time.perf_counter() - began)
    conn.close()
    latencies.sort()
    download = json.loads(procs[0].communicate()[0])
    for proc in procs[1:]:
        proc.communicate()
    return {
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "samples": len(latencies),
        "download_mbps": download["down"] / 1e6,
    }


def fairness(server: Server, big: Path) -> dict[str, float]:
    fresh_upload(server, "fair-up.bin")
    started = time.perf_counter()
    figures = small_gets_during(
        server, "4k.bin", [[server.url("big.bin")], ["-T", str(big), server.url("fair-up.bin")]]
    )
    figures["elapsed_s"] = time.perf_counter() - started
    return figures


def peak_rss_growth(server: Server, action: Callable[[], None]) -> float:
    """MiB the busiest worker's peak RSS grew during `action` (its peak is reset first)."""
    base = {}
    for pid in server.workers():
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM
        base[pid] = _status(pid, "VmRSS")
    action()
    return max(_status(pid, "VmHWM") - rss for pid, rss in base.items()) / 1024


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


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


def median_spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def run(scale: Scale, workers: int) -> dict[str, Any]:
    ensure_tools()
    results: dict[str, Any] = {"scale": scale.__dict__, "workers": workers, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="storage-bench-") as tmp_name:
        tmp = Path(tmp_name)
        big = make_file(tmp / "big.bin", scale.big)
        storage, nginx = Storage(tmp, workers, fsync=True), Nginx(tmp, workers)
        servers: list[Server] = [storage, nginx]
        try:
            for server in servers:
                for name, size in (("4k.bin", 4 * KiB), ("64k.bin", 64 * KiB), ("1m.bin", MiB)):
                    assert request(server, "PUT", name, os.urandom(size)) in (200, 201, 204)
            rounds: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
            for _ in range(scale.rounds):
                for server in servers:  # A B A B ...
                    figures: dict[str, float] = {}
                    transfers(server, big, figures)
                    rounds[server.name].append(figures)
            for server in servers:
                summary = {
                    k: median_spread([r[k] for r in rounds[server.name]]) for k in rounds[server.name][0]
                }
                summary.update(ttfb(server, "1m.bin", 20, scale.ttfb_requests))
                for size in ("4k", "64k"):
                    summary[f"get_{size}"] = wrk(server, scale.wrk_seconds, server.url(f"{size}.bin"))
                    script = put_script(tmp, server, 4 * KiB if size == "4k" else 64 * KiB)
                    summary[f"put_{size}"] = wrk(server, scale.wrk_seconds, server.url("x"), script)
                summary["fairness"] = fairness(server, big)
                results[server.name] = summary
            results["storage_server"]["memory"] = memory(storage, scale.memory)
            results["storage_server"]["tus_upload_mbps"] = tus_upload(storage, big)
            storage.stop()
            # Uploads without fsync, and (downloads do not depend on it) downloads without sendfile.
            unsynced = Storage(tmp / "nofsync", workers, fsync=False, extra=("--no-sendfile",))
            servers.append(unsynced)
            figures = {}
            transfers(unsynced, big, figures)
            results["storage_server"]["upload_raw_mbps_no_fsync"] = figures["upload_raw_mbps"]
            results["storage_server"]["download_mbps_no_sendfile"] = figures["download_mbps"]
            results["storage_server"]["cpu_s_per_gib_down_no_sendfile"] = figures["cpu_s_per_gib_down"]
            unsynced.stop()
            # The cost of checking a key on every request: the same small GETs, keys configured.
            keyed = Storage(tmp / "keyed", workers, fsync=True, api_key="bench-secret-0123456789")
            servers.append(keyed)
            assert request(keyed, "PUT", "4k.bin", os.urandom(4 * KiB)) in (200, 201)
            results["storage_server"]["get_4k_with_key"] = wrk(keyed, scale.wrk_seconds, keyed.url("4k.bin"))
            assert results["storage_server"]["get_4k_with_key"]["non_2xx"] == 0, "the key was refused"
        finally:
            for server in servers:
                server.stop()
    return results


TARGETS = [
    # (label, storage value, nginx value, required ratio or None, absolute check)
    ("1 GiB raw upload MB/s", "upload_raw_mbps", "upload_raw_mbps", 0.6),
    ("1 GiB multipart upload MB/s", "upload_multipart_mbps", "upload_raw_mbps", 0.5),
    ("1 GiB download MB/s", "download_mbps", "download_mbps", 0.9),
]


def table(results: dict[str, Any]) -> str:
    s, n = results["storage_server"], results["nginx"]
    rows = [("metric", "storage_server", "nginx", "ratio", "target", "")]

    def add(label: str, ours: float, theirs: float | None, target: str, ok: bool) -> None:
        ratio = f"{ours / theirs:.2f}" if theirs else ""
        rows.append(
            (
                label,
                f"{ours:,.1f}",
                f"{theirs:,.1f}" if theirs is not None else "",
                ratio,
                target,
                "met" if ok else "NOT met",
            )
        )

    for label, ours, theirs, ratio in TARGETS:
        mine, other = s[ours]["median"], n[theirs]["median"]
        add(label, mine, other, f">= {ratio} x nginx", mine >= ratio * other)
    add("1 GiB download MB/s, sendfile off", s["download_mbps_no_sendfile"], n["download_mbps"]["median"],
        "(report: what sendfile buys)", True)  # fmt: skip
    add("CPU s per GiB down, sendfile off", s["cpu_s_per_gib_down_no_sendfile"],
        n["cpu_s_per_gib_down"]["median"], "(report)", True)  # fmt: skip
    tus, raw = s["tus_upload_mbps"], s["upload_raw_mbps"]["median"]
    add(
        "1 GiB tus upload MB/s, 8 MiB chunks (vs our raw)",
        tus,
        raw,
        ">= 0.7 x our raw upload",
        tus >= 0.7 * raw,
    )
    add(
        "raw upload MB/s, fsync off",
        s["upload_raw_mbps_no_fsync"],
        n["upload_raw_mbps"]["median"],
        "(report)",
        True,
    )
    add("4 KiB GET req/s", s["get_4k"]["rps"], n["get_4k"]["rps"], ">= 0.10 x, p99 < 10 ms",
        s["get_4k"]["rps"] >= 0.1 * n["get_4k"]["rps"] and s["get_4k"]["p99_ms"] < 10)  # fmt: skip
    add(
        "4 KiB GET p99 ms",
        s["get_4k"]["p99_ms"],
        n["get_4k"]["p99_ms"],
        "< 10 ms",
        s["get_4k"]["p99_ms"] < 10,
    )
    keyed = s["get_4k_with_key"]
    add("4 KiB GET req/s, with X-API-Key", keyed["rps"], n["get_4k"]["rps"], "(report: key check cost)", True)
    add("4 KiB GET p99 ms, with X-API-Key", keyed["p99_ms"], n["get_4k"]["p99_ms"], "(report)", True)
    add("64 KiB GET req/s", s["get_64k"]["rps"], n["get_64k"]["rps"], "(report)", True)
    add("4 KiB upload req/s", s["put_4k"]["rps"], n["put_4k"]["rps"], ">= 0.25 x nginx PUT",
        s["put_4k"]["rps"] >= 0.25 * n["put_4k"]["rps"])  # fmt: skip
    add("64 KiB upload req/s", s["put_64k"]["rps"], n["put_64k"]["rps"], "(report)", True)
    fair = s["fairness"]
    add(
        "small GET p99 ms during 1 GiB down+up",
        fair["p99_ms"],
        n["fairness"]["p99_ms"],
        "< 5 ms",
        fair["p99_ms"] < 5,
    )
    add("... the 1 GiB download itself, MB/s", fair["download_mbps"], n["fairness"]["download_mbps"],
        ">= 0.6 x nginx's", fair["download_mbps"] >= 0.6 * n["fairness"]["download_mbps"])  # fmt: skip
    add("download TTFB p50 ms, 20 clients", s["ttfb_p50_ms"], n["ttfb_p50_ms"], "(report)", True)
    add(
        "download TTFB p99 ms, 20 clients",
        s["ttfb_p99_ms"],
        n["ttfb_p99_ms"],
        "< 10 ms",
        s["ttfb_p99_ms"] < 10,
    )
    mem = s["memory"]
    add(
        "RSS growth MiB/worker, upload",
        mem["rss_growth_upload_mib"],
        None,
        "< 64 MiB",
        mem["rss_growth_upload_mib"] < 64,
    )
    add("RSS growth MiB/worker, slow download", mem["rss_growth_download_mib"], None, "< 64 MiB",
        mem["rss_growth_download_mib"] < 64)  # fmt: skip
    for label, key, field in (
        ("CPU s per GiB up", "cpu_s_per_gib_up", "median"),
        ("CPU s per GiB down", "cpu_s_per_gib_down", "median"),
        ("CPU ms per 4 KiB GET", "get_4k", "cpu_ms_per_request"),
        ("CPU ms per 4 KiB upload", "put_4k", "cpu_ms_per_request"),
    ):
        add(label, s[key][field], n[key][field], "(report)", True)
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    lines = [
        "| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |" for row in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def cli(
    doc: str, run_at: Callable[[Scale, int], dict[str, Any]], report: Callable[[dict[str, Any]], str]
) -> None:
    """A benchmark's command line: --smoke, --workers, --json; prints its table."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few MiB and one round (CI)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    results = run_at(SMOKE if args.smoke else FULL, args.workers)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    cli(__doc__, run, table)
