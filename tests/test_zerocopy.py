"""Zero-copy downloads on the filesystem backend: the bytes and ranges are exact, the kernel sends
them (sendfile, read off strace), and a client that goes away mid-transfer costs nothing."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
from pathlib import Path

import pytest

from storage_server.blobfs import BlobStore
from tests.conftest import Api
from tests.service import MiB, Service, children
from tests.test_crash_order import stop, traced

DATA = os.urandom(3 * MiB + 12345)


@pytest.fixture
def big(store: BlobStore) -> str:
    store.create_bucket("photos")
    upload = store.begin_upload("photos", "big.bin")
    upload.write(DATA)
    upload.commit(content_type="application/octet-stream", name="big.bin")
    return "/api/v1/files/photos/big.bin"


async def test_a_large_download_is_exact(api: Api, big: str) -> None:
    response = await api.request("GET", big)
    assert response.code == 200
    assert hashlib.sha256(response.body).digest() == hashlib.sha256(DATA).digest()
    assert int(response.headers["Content-Length"]) == len(DATA)


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=1000000-2500000", 1_000_000, 2_500_000),
        ("bytes=70000-", 70_000, len(DATA) - 1),
        ("bytes=-200000", len(DATA) - 200_000, len(DATA) - 1),
        ("bytes=0-65536", 0, 65_536),
    ],
)
async def test_ranges_are_exact(api: Api, big: str, header: str, first: int, last: int) -> None:
    response = await api.request("GET", big, headers={"Range": header})
    assert response.code == 206
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/{len(DATA)}"
    assert response.body == DATA[first : last + 1]


def put(service: Service, key: str, data: bytes) -> None:
    conn = service.connection()
    try:
        conn.request("POST", "/api/v1/buckets", body=b'{"name": "photos"}')
        conn.getresponse().read()
        conn.request("PUT", f"/api/v1/files/photos/{key}", body=data)
        assert conn.getresponse().status == 201
    finally:
        conn.close()


def test_the_kernel_sends_the_body_and_can_be_told_not_to(start: type[Service], tmp_path: Path) -> None:
    for flag, expected in (("--sendfile", True), ("--no-sendfile", False)):
        service = start("--workers", "1", flag)
        service.wait_ready(workers=1)
        put(service, "big.bin", DATA)
        log = tmp_path / f"strace{flag}.log"
        tracer = traced(service, log, "-e", "trace=sendfile")
        try:
            status, body = service.request("GET", "/api/v1/files/photos/big.bin")
        finally:
            stop(tracer)
        assert (status, body == DATA) == (200, True)
        calls = [line for line in log.read_text().splitlines() if "sendfile(" in line]
        assert bool(calls) is expected, calls[:5]
        service.stop()


def test_a_client_gone_mid_transfer_leaks_nothing_and_the_worker_goes_on(
    start: type[Service], tmp_path: Path
) -> None:
    service = start("--workers", "1")
    service.wait_ready(workers=1)
    huge = os.urandom(MiB) * 48
    put(service, "huge.bin", huge)
    worker = children(service.proc.pid)[0]
    fds = len(os.listdir(f"/proc/{worker}/fd"))
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", service.port)) as sock:
            sock.sendall(b"GET /api/v1/files/photos/huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            got = 0
            while got < 2 * MiB:
                got += len(sock.recv(1 << 16))
    deadline = time.monotonic() + 10
    while len(os.listdir(f"/proc/{worker}/fd")) > fds and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(os.listdir(f"/proc/{worker}/fd")) <= fds
    conn = http.client.HTTPConnection("127.0.0.1", service.port, timeout=30)
    try:
        conn.request("GET", "/api/v1/files/photos/huge.bin", headers={"Range": "bytes=5000000-5000009"})
        assert conn.getresponse().read() == huge[5_000_000:5_000_010]
    finally:
        conn.close()
    assert "Traceback" not in service.output()
