"""Fault tests: kill -9 mid-upload, readers during overwrites, racing clients, aborted transfers,
SIGTERM with uploads in flight. CI runs reduced counts; `make torture` runs the full ones
(TORTURE=full), which also enforce the latency figures."""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import signal
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from storage_server import blobfs
from tests.service import MiB, Service, children

FULL = os.environ.get("TORTURE") == "full"


def scaled(full: int, reduced: int) -> int:
    return full if FULL else reduced


def body_for(seed: int, size: int) -> bytes:
    """Distinct bytes per seed, cheap to make at any size."""
    block = hashlib.sha256(str(seed).encode()).digest() * (MiB // 32)
    whole, rest = divmod(size, len(block))
    return block * whole + block[:rest]


def temp_files(data: Path) -> list[str]:
    return os.listdir(data / blobfs.INTERNAL_DIR / "tmp")


def files_on_disk(data: Path, bucket: str) -> dict[str, str]:
    root = data / bucket
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def put(service: Service, key: str, data: bytes, bucket: str = "photos") -> int:
    return service.request("PUT", f"/api/v1/files/{bucket}/{key}", data)[0]


def get_hash(service: Service, key: str, bucket: str = "photos") -> str | None:
    status, body = service.request("GET", f"/api/v1/files/{bucket}/{key}")
    assert status in (200, 404), (status, body[:200])
    return hashlib.sha256(body).hexdigest() if status == 200 else None


def wait_for_workers(service: Service, count: int, gone: int | None = None) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        workers = children(service.proc.pid)
        if len(workers) == count and gone not in workers:
            try:
                if service.request("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
        time.sleep(0.02)
    raise AssertionError("workers did not come back")


@pytest.fixture
def service(start: type[Service]) -> Service:
    svc = start("--workers", "1", "--access-log", "off")
    svc.wait_ready(workers=1)
    assert svc.request("POST", "/api/v1/buckets", b'{"name": "photos"}')[0] == 201
    return svc


def test_kill_9_mid_upload_leaves_only_acknowledged_files(start: type[Service], service: Service) -> None:
    rng = random.Random(1)
    acknowledged: dict[str, str] = {}
    trials = scaled(200, 12)
    for trial in range(trials):
        key = f"dir{trial % 3}/k{trial % 7}.bin"
        if rng.random() < 0.5:  # a previous complete version, sometimes
            data = body_for(10_000 + trial, rng.randint(1, 256 * 1024))
            assert put(service, key, data) == 201
            acknowledged[key] = hashlib.sha256(data).hexdigest()
        size = rng.randint(1, scaled(64, 8)) * MiB
        cut = rng.randrange(size)
        worker = children(service.proc.pid)[0]
        with socket.create_connection(("127.0.0.1", service.port)) as sock:
            sock.sendall(upload_head(key, size))
            body = body_for(trial, cut)
            sock.sendall(body)
            time.sleep(0.02)  # let the worker take in what was sent
            os.kill(worker, signal.SIGKILL)
        wait_for_workers(service, 1, gone=worker)
        assert get_hash(service, key) == acknowledged.get(key), f"trial {trial}: a partial or lost version"

    service.stop()
    restarted = start("--workers", "1", "--access-log", "off")
    restarted.wait_ready(workers=1)
    assert temp_files(restarted.data) == []
    assert files_on_disk(restarted.data, "photos") == acknowledged
    for key, digest in acknowledged.items():
        assert get_hash(restarted, key) == digest
    print(f"kill -9 torture: {trials} trials, {len(acknowledged)} acknowledged keys intact, 0 temp files")


def test_readers_never_see_a_torn_overwrite(start: type[Service]) -> None:
    svc = start("--workers", "2", "--access-log", "off")
    svc.wait_ready(workers=2)
    svc.request("POST", "/api/v1/buckets", b'{"name": "photos"}')
    overwrites = scaled(1000, 120)
    versions = {i: body_for(i, 64 * 1024 + (i * 7919) % (192 * 1024)) for i in range(overwrites)}
    started: set[str] = set()
    assert put(svc, "hot.bin", versions[0]) == 201
    started.add(hashlib.sha256(versions[0]).hexdigest())
    done = threading.Event()
    seen: list[str] = []
    errors: list[str] = []

    def read() -> None:
        conn = svc.connection()
        while not done.is_set():
            conn.request("GET", "/api/v1/files/photos/hot.bin")
            response = conn.getresponse()
            digest = hashlib.sha256(response.read()).hexdigest()
            if response.status != 200 or digest not in started:
                errors.append(f"{response.status} {digest}")
            seen.append(digest)
        conn.close()

    readers = [threading.Thread(target=read) for _ in range(8)]
    for reader in readers:
        reader.start()
    conn = svc.connection()
    for i in range(1, overwrites):
        started.add(hashlib.sha256(versions[i]).hexdigest())
        conn.request("PUT", "/api/v1/files/photos/hot.bin", body=versions[i])
        response = conn.getresponse()
        response.read()
        assert response.status == 201
    conn.close()
    done.set()
    for reader in readers:
        reader.join()
    assert errors == []
    assert len(seen) > overwrites
    print(f"atomic overwrite: {overwrites} overwrites, {len(seen)} reads by 8 readers, 0 torn")


def test_racing_clients_never_get_5xx_or_resurrect_deleted_things(start: type[Service]) -> None:
    svc = start("--workers", "2", "--access-log", "off")
    svc.wait_ready(workers=2)
    svc.request("POST", "/api/v1/buckets", b'{"name": "photos"}')
    rounds = scaled(300, 60)
    statuses: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> dict[str, bool]:
        rng = random.Random(n)
        mine: dict[str, bool] = {}  # key -> present after my last acknowledged operation
        conn = svc.connection()
        for i in range(rounds):
            key = f"shared/{rng.choice('ab')}/{rng.choice('cd')}/c{n}-{rng.randrange(3)}.bin"
            if rng.random() < 0.6:
                conn.request(
                    "PUT", f"/api/v1/files/photos/{key}", body=body_for(n * 1000 + i, rng.randrange(2000))
                )
            else:
                conn.request("DELETE", f"/api/v1/files/photos/{key}")
            response = conn.getresponse()
            response.read()
            with lock:
                statuses.append(response.status)
            if response.status in (201, 204):
                mine[key] = response.status == 201
        conn.close()
        return mine

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(client, range(6)))
    assert all(status < 500 for status in statuses), sorted(set(statuses))
    for mine in outcomes:  # each key has one writer: its last acknowledged operation wins
        for key, present in mine.items():
            assert (get_hash(svc, key) is not None) == present, key
    assert json.loads(svc.request("GET", "/api/v1/buckets/photos")[1])["file_count"] == sum(
        present for mine in outcomes for present in mine.values()
    )


def test_a_bucket_deleted_under_running_uploads_stays_deleted(start: type[Service]) -> None:
    svc = start("--workers", "2", "--access-log", "off")
    svc.wait_ready(workers=2)
    svc.request("POST", "/api/v1/buckets", b'{"name": "doomed"}')
    deleted = threading.Event()
    after_delete: list[int] = []
    all_statuses: list[int] = []

    stop = threading.Event()

    def uploader(n: int) -> None:
        i = 0
        while not stop.is_set():
            was_deleted = deleted.is_set()
            status = svc.request("PUT", f"/api/v1/files/doomed/deep/n{n}/f{i}.bin", b"x" * 5000)[0]
            all_statuses.append(status)
            if was_deleted:
                after_delete.append(status)
            i += 1

    threads = [threading.Thread(target=uploader, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    while len(all_statuses) < scaled(400, 60):
        time.sleep(0.01)
    assert svc.request("DELETE", "/api/v1/buckets/doomed")[0] == 204
    deleted.set()
    while len(after_delete) < scaled(400, 60):
        time.sleep(0.01)
    stop.set()
    for t in threads:
        t.join()
    assert all(s < 500 for s in all_statuses)
    assert after_delete
    assert set(after_delete) == {404}
    assert not (svc.data / "doomed").exists()
    assert svc.request("GET", "/api/v1/buckets/doomed")[0] == 404


def upload_head(key: str, size: int) -> bytes:
    return f"PUT /api/v1/files/photos/{key} HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode()


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_aborted_uploads_and_downloads_leak_nothing(service: Service) -> None:
    assert put(service, "big.bin", body_for(1, 8 * MiB)) == 201
    worker = children(service.proc.pid)[0]
    service.request("GET", "/health")
    baseline = fd_count(worker)
    count = scaled(500, 60)
    for i in range(count):
        with socket.create_connection(("127.0.0.1", service.port)) as sock:
            sock.sendall(upload_head(f"aborted{i % 5}.bin", 10_000_000) + b"z" * 70_000)
        with socket.create_connection(("127.0.0.1", service.port)) as sock:
            sock.sendall(b"GET /api/v1/files/photos/big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.recv(65536)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
    deadline = time.monotonic() + 10
    while (temp_files(service.data) or fd_count(worker) > baseline) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert temp_files(service.data) == []
    assert fd_count(worker) <= baseline
    assert service.request("GET", "/api/v1/files/photos/aborted0.bin")[0] == 404
    assert "Traceback" not in service.output()
    print(f"disconnects: {count} aborted uploads and downloads each, fds {baseline} -> {fd_count(worker)}")


def test_sigterm_with_uploads_in_flight_acknowledges_or_leaves_nothing(start: type[Service]) -> None:
    svc = start("--workers", "2", "--access-log", "off", "--shutdown-timeout", "10")
    svc.wait_ready(workers=2)
    svc.request("POST", "/api/v1/buckets", b'{"name": "photos"}')
    size = 2 * MiB
    results: dict[int, int | None] = {}
    sent_half = threading.Barrier(21)

    def upload(n: int) -> None:
        conn = svc.connection()
        try:
            conn.putrequest("PUT", f"/api/v1/files/photos/u{n}.bin")
            conn.putheader("Content-Length", str(size))
            conn.endheaders()
            conn.send(body_for(n, size)[: size // 2])
            sent_half.wait()
            time.sleep(0.3)
            conn.send(body_for(n, size)[size // 2 :])
            results[n] = conn.getresponse().status
        except OSError:
            results[n] = None
        finally:
            conn.close()

    threads = [threading.Thread(target=upload, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    sent_half.wait()
    started = time.monotonic()
    os.kill(svc.proc.pid, signal.SIGTERM)
    for t in threads:
        t.join()
    assert svc.proc.wait(20) == 0
    assert time.monotonic() - started < 12
    stored = files_on_disk(svc.data, "photos")
    for n, status in results.items():
        expected = hashlib.sha256(body_for(n, size)).hexdigest()
        if status == 201:
            assert stored.get(f"u{n}.bin") == expected
        else:
            assert f"u{n}.bin" not in stored
    assert temp_files(svc.data) == []
    print(f"graceful stop: {sum(s == 201 for s in results.values())}/20 acknowledged, the rest left nothing")


def test_slow_and_idle_clients_do_not_starve_the_service(start: type[Service], tmp_path: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    svc = start("--workers", "1", "--access-log", "off", "--idle-timeout", "3", "--stall-timeout", "2")
    svc.wait_ready(workers=1)
    svc.request("POST", "/api/v1/buckets", b'{"name": "photos"}')
    assert put(svc, "small.bin", b"s" * 4096) == 201
    idle = [socket.create_connection(("127.0.0.1", svc.port)) for _ in range(scaled(1000, 300))]
    opened = time.monotonic()

    results: dict[str, int] = {}

    def trickle(name: str, pause: float, count: int) -> None:
        """Send a 10-byte body one byte at a time, `pause` seconds apart."""
        with socket.create_connection(("127.0.0.1", svc.port)) as sock:
            sock.sendall(upload_head(name, 10))
            for _ in range(count):
                time.sleep(pause)
                sock.sendall(b"x")
            sock.settimeout(10)
            answer = sock.recv(100)
            results[name] = int(answer.split()[1]) if answer else 0

    steady = [threading.Thread(target=trickle, args=(f"steady{n}.bin", 0.5, 10)) for n in range(3)]
    stalled = threading.Thread(target=trickle, args=("stalled.bin", 5.0, 1))  # 5 s of silence
    for t in [*steady, stalled]:
        t.start()

    latencies = []
    conn = svc.connection()
    for _ in range(200):
        began = time.perf_counter()
        conn.request("GET", "/api/v1/files/photos/small.bin")
        conn.getresponse().read()
        latencies.append(time.perf_counter() - began)
    conn.close()
    p99 = sorted(latencies)[int(len(latencies) * 0.99) - 1]

    for t in [*steady, stalled]:
        t.join()
    assert {results[f"steady{n}.bin"] for n in range(3)} == {201}  # slow but steady: never cut off
    assert results["stalled.bin"] == 0  # dropped without an answer after 2 s of silence
    assert svc.request("GET", "/api/v1/files/photos/stalled.bin")[0] == 404
    assert temp_files(svc.data) == []

    # the idle connections were closed by the server after the idle timeout
    remaining = max(0.0, 3.5 - (time.monotonic() - opened))
    time.sleep(remaining)
    closed = 0
    for sock in idle:
        sock.settimeout(2)
        try:
            closed += sock.recv(1) == b""
        except OSError:
            closed += 1
        sock.close()
    assert closed == len(idle)
    print(f"slow clients: {len(idle)} idle connections, GET p99 {p99 * 1000:.1f} ms, all idle closed")
    assert p99 < (0.25 if FULL else 2.0)  # the latency figure is checked by `make torture` only
