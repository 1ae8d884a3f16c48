"""Real tus clients against run.py, on both backends: tuspy (Python) and tus-js-client (under
Node) upload files in small chunks, are interrupted mid-way (the connection cut by a proxy, and
separately the server killed with SIGKILL and restarted on the same data and port), resume, and
the file downloaded is the one sent."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError

from tests.seaweed import s3_env
from tests.service import ROOT, Service

JS = ROOT / "tests" / "js"
CREATE = "/api/v1/upload/resumable"
CHUNK = 256 << 10


def payload(size: int) -> bytes:
    block = hashlib.sha256(str(size).encode()).digest()
    return (block * (size // len(block) + 1))[:size]


class CuttingProxy:
    """A TCP proxy to the service that cuts its connections once, after `cut_after` bytes from
    the client, and can slow the way in to `pace` seconds per 64 KiB."""

    def __init__(self, port: int, cut_after: int | None = None, pace: float = 0.0) -> None:
        self.target = port
        self.cut_after = cut_after
        self.pace = pace
        self.relayed = 0
        self.cut = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                try:
                    server = socket.create_connection(("127.0.0.1", self.target))
                except OSError:
                    client.close()
                    continue
                threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
                threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while data := src.recv(65536):
                if upstream:
                    self.relayed += len(data)
                    if self.cut_after is not None and not self.cut.is_set() and self.relayed > self.cut_after:
                        self.cut.set()
                        break
                    time.sleep(self.pace)
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def env(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    return s3_env(request.getfixturevalue("seaweedfs").endpoints[0]) if backend == "s3" else {}


@pytest.fixture
def service(tmp_path: Path, env: dict[str, str]) -> Iterator[Service]:
    started = Service(tmp_path / "data", "--workers", "2", "--access-log", "off", env=env)
    try:
        started.wait_ready(workers=2)
        assert started.request("POST", "/api/v1/buckets", b'{"name": "photos"}')[0] == 201
        yield started
    finally:
        started.stop()


def restart(old: Service, env: dict[str, str]) -> Service:
    """SIGKILL the service (every process of it), then start it again on its data and port."""
    os.killpg(old.proc.pid, signal.SIGKILL)
    old.proc.wait(10)
    new = Service(old.data, "--workers", "2", "--access-log", "off", env=env, port=old.port)
    new.wait_ready(workers=2)
    return new


def downloaded(service: Service, key: str) -> bytes:
    """The file's bytes, once checked against the sha256 its record carries (Repr-Digest)."""
    conn = service.connection()
    try:
        conn.request("GET", f"/api/v1/files/photos/{key}")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    assert response.status == 200, body
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert response.headers["Repr-Digest"] == f"sha-256=:{digest}:"
    return body


def offset_of(service: Service, url: str) -> int:
    conn = service.connection()
    try:
        conn.request("HEAD", url, headers={"Tus-Resumable": "1.0.0"})
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
        return int(response.headers["Upload-Offset"])
    finally:
        conn.close()


def tuspy_uploader(port: int, data: bytes, key: str, url: str | None = None, retries: int = 60) -> Any:
    client = TusClient(f"http://127.0.0.1:{port}{CREATE}")
    metadata = {"bucketName": "photos", "objectName": key, "contentType": "application/octet-stream"}
    return client.uploader(
        file_stream=io.BytesIO(data),
        chunk_size=CHUNK,
        metadata=metadata,
        url=url,
        retries=retries,
        retry_delay=0.5,
    )


@pytest.mark.parametrize("size", [1, 3 * CHUNK + 17, 3 << 20])
def test_tuspy_uploads_files_of_several_sizes(service: Service, size: int) -> None:
    data = payload(size)
    tuspy_uploader(service.port, data, f"sized-{size}.bin").upload()
    assert downloaded(service, f"sized-{size}.bin") == data


def test_tuspy_resumes_after_the_connection_is_cut(service: Service) -> None:
    data = payload(3 << 20)
    proxy = CuttingProxy(service.port, cut_after=1_300_000)
    uploader = tuspy_uploader(proxy.port, data, "cut.bin", retries=0)
    with pytest.raises(TusCommunicationError):
        uploader.upload()
    assert proxy.cut.is_set()
    tuspy_uploader(proxy.port, data, "cut.bin", url=uploader.url).upload()
    assert downloaded(service, "cut.bin") == data
    proxy.close()


def test_tuspy_resumes_after_the_server_is_killed(service: Service, env: dict[str, str]) -> None:
    data = payload(3 << 20)
    proxy = CuttingProxy(service.port, pace=0.05)  # slow enough to be mid-way when killed
    uploader = tuspy_uploader(proxy.port, data, "killed.bin", retries=0)
    acknowledged: list[int] = []

    def run() -> None:
        with contextlib.suppress(Exception):
            uploader.set_url(uploader.create_url())
            uploader.offset = 0
            while uploader.offset < len(data):
                uploader.upload_chunk()
                acknowledged.append(uploader.offset)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 20
    while not acknowledged and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    service = restart(service, env)
    thread.join(30)
    received = proxy.relayed  # the server cannot have more than the proxy passed on
    try:
        path = urllib.parse.urlsplit(uploader.url).path
        offset = offset_of(service, path)
        assert max(acknowledged) <= offset <= received
        assert offset < len(data)
        tuspy_uploader(
            service.port, data, "killed.bin", url=f"http://127.0.0.1:{service.port}{path}"
        ).upload()
        assert downloaded(service, "killed.bin") == data
    finally:
        service.stop()
        proxy.close()


def node_upload(port: int, path: Path, key: str, delay_ms: int = 0) -> subprocess.Popen[str]:
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    subprocess.run([str(JS / "install.sh")], check=True, timeout=300)
    metadata = json.dumps({"bucketName": "photos", "objectName": key, "filename": path.name})
    endpoint = f"http://127.0.0.1:{port}{CREATE}"
    return subprocess.Popen(
        ["node", str(JS / "upload.mjs"), endpoint, str(path), str(CHUNK), metadata, str(delay_ms)],
        cwd=JS,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finished(node: subprocess.Popen[str]) -> list[str]:
    out, _ = node.communicate(timeout=120)
    assert node.returncode == 0, out
    lines = out.splitlines()
    assert lines[-1] == "done", out
    return lines


@pytest.mark.parametrize("size", [1, 3 * CHUNK + 17, 3 << 20])
def test_tus_js_client_uploads_files_of_several_sizes(service: Service, tmp_path: Path, size: int) -> None:
    data = payload(size)
    (tmp_path / "f.bin").write_bytes(data)
    finished(node_upload(service.port, tmp_path / "f.bin", f"js-{size}.bin"))
    assert downloaded(service, f"js-{size}.bin") == data


def test_tus_js_client_resumes_after_the_connection_is_cut(service: Service, tmp_path: Path) -> None:
    data = payload(3 << 20)
    (tmp_path / "f.bin").write_bytes(data)
    proxy = CuttingProxy(service.port, cut_after=1_300_000)
    finished(node_upload(proxy.port, tmp_path / "f.bin", "js-cut.bin"))
    assert proxy.cut.is_set()
    assert downloaded(service, "js-cut.bin") == data
    proxy.close()


def test_tus_js_client_resumes_after_the_server_is_killed(
    service: Service, env: dict[str, str], tmp_path: Path
) -> None:
    data = payload(3 << 20)
    (tmp_path / "f.bin").write_bytes(data)
    node = node_upload(service.port, tmp_path / "f.bin", "js-killed.bin", delay_ms=150)
    assert node.stdout is not None
    for line in node.stdout:
        if line.startswith("offset") and int(line.split()[1]) >= 1 << 20:
            break
    service = restart(service, env)
    try:
        lines = finished(node)
        assert int(lines[-2].split()[1]) == len(data)
        assert downloaded(service, "js-killed.bin") == data
    finally:
        service.stop()
