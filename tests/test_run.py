"""run.py as operators start it: forked workers on one port, supervision, graceful stop, memory."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from storage_server import blobfs
from tests.seaweed import s3_env
from tests.service import ROOT, MiB, Service, children, memory_kib


def test_two_workers_share_the_port_and_a_dead_worker_is_replaced(start: type[Service]) -> None:
    service = start("--workers", "2")
    service.wait_ready(workers=2)
    assert service.request("POST", "/api/v1/buckets", b'{"name": "photos"}')[0] == 201
    assert service.request("POST", "/api/v1/files/photos/a.txt", b"hello")[0] == 201

    victim = children(service.proc.pid)[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        workers = children(service.proc.pid)
        if len(workers) == 2 and victim not in workers:
            break
        time.sleep(0.05)
    assert len(workers) == 2
    assert victim not in workers
    for _ in range(20):  # every request lands on a live worker
        assert service.request("GET", "/api/v1/files/photos/a.txt") == (200, b"hello")


def test_both_workers_take_connections(start: type[Service]) -> None:
    service = start("--workers", "2")
    service.wait_ready(workers=2)
    # Each worker has its own SO_REUSEPORT socket: the kernel spreads new connections over both.
    served_by = set()
    for _ in range(40):
        conn = service.connection()
        conn.connect()
        local = conn.sock.getsockname()
        conn.request("GET", "/health")
        conn.getresponse().read()
        served_by.add(_server_pid_of(local, service.port))
        conn.close()
    assert served_by == set(children(service.proc.pid))


def _server_pid_of(client: tuple[str, int], port: int) -> int:
    """The PID owning the server side of a connection from `client`, found through /proc."""
    want = f"{socket.htonl(0x7F000001):08X}:{port:04X} {socket.htonl(0x7F000001):08X}:{client[1]:04X}"
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if f"{fields[1]} {fields[2]}" == want:
            inode = fields[9]
    assert inode is not None
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                for fd in (proc / "fd").iterdir():
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return int(proc.name)
            except OSError:
                continue
    raise AssertionError("no process owns the connection")


def test_sigterm_lets_an_upload_in_flight_finish(start: type[Service]) -> None:
    service = start("--workers", "2", "--shutdown-timeout", "10")
    service.wait_ready(workers=2)
    service.request("POST", "/api/v1/buckets", b'{"name": "photos"}')
    conn = service.connection()
    conn.putrequest("POST", "/api/v1/files/photos/inflight.bin")
    conn.putheader("Content-Length", str(4 * MiB))
    conn.endheaders()
    conn.send(b"a" * (2 * MiB))
    time.sleep(0.3)
    os.kill(service.proc.pid, signal.SIGTERM)
    time.sleep(0.5)
    conn.send(b"a" * (2 * MiB))
    response = conn.getresponse()
    assert response.status == 201
    assert json.loads(response.read())["file"]["sha256"] == hashlib.sha256(b"a" * (4 * MiB)).hexdigest()
    conn.close()
    assert service.proc.wait(15) == 0
    assert (service.data / "photos" / "inflight.bin").stat().st_size == 4 * MiB
    assert "Traceback" not in service.output()


def test_stale_temp_files_are_swept_at_start(start: type[Service], tmp_path: Path) -> None:
    tmp = tmp_path / "data" / blobfs.INTERNAL_DIR / "tmp"
    tmp.mkdir(parents=True)
    (tmp / "crashed.part").write_bytes(b"half an upload")
    service = start("--workers", "1")
    service.wait_ready(workers=1)
    assert os.listdir(tmp) == []


def test_a_taken_port_fails_fast_with_a_clear_message(start: type[Service]) -> None:
    first = start("--workers", "1")
    first.wait_ready(workers=1)
    second = start("--port", str(first.port))
    assert second.proc.wait(20) != 0
    assert "cannot start" in second.output()


@pytest.mark.parametrize("backend", ["fs", "s3"])
def test_200_mib_up_and_down_keep_worker_memory_flat(
    start: type[Service], backend: str, request: pytest.FixtureRequest
) -> None:
    env = s3_env(request.getfixturevalue("seaweedfs").endpoints[0]) if backend == "s3" else {}
    service = start("--workers", "1", env=env)
    service.wait_ready(workers=1)
    service.request("POST", "/api/v1/buckets", b'{"name": "photos"}')
    worker = children(service.proc.pid)[0]
    baseline = memory_kib(worker, "VmRSS")

    size, block = 200 * MiB, os.urandom(MiB)
    conn = service.connection()
    conn.putrequest("PUT", "/api/v1/files/photos/big.bin")
    conn.putheader("Content-Length", str(size))
    conn.endheaders()
    for _ in range(size // MiB):
        conn.send(block)
    response = conn.getresponse()
    assert response.status == 201, response.read()
    response.read()

    received = 0
    slow = threading.Event()
    conn.request("GET", "/api/v1/files/photos/big.bin")
    download = conn.getresponse()
    while chunk := download.read(MiB):
        received += len(chunk)
        if not slow.is_set() and received > 50 * MiB:
            time.sleep(0.5)  # a slow reader: the server must not buffer ahead
            slow.set()
    conn.close()
    assert received == size
    growth_mib = (memory_kib(worker, "VmHWM") - baseline) / 1024
    print(f"{backend}: worker peak RSS growth over 200 MiB up and down: {growth_mib:.1f} MiB")
    assert growth_mib < 50


def test_systemd_hears_ready_after_listening_and_stopping_on_sigterm(
    start: type[Service], tmp_path: Path
) -> None:
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(address))
        systemd.settimeout(20)
        service = start("--workers", "2", env={"NOTIFY_SOCKET": str(address)})
        ready = systemd.recv(4096).decode()
        assert ready.startswith("READY=1")
        assert service.request("GET", "/health")[0] == 200  # READY came once the worker listened
        os.kill(service.proc.pid, signal.SIGTERM)
        messages = []
        while "STOPPING=1" not in messages:
            messages.append(systemd.recv(4096).decode())
        assert service.proc.wait(20) == 0


def test_the_unit_file_verifies_and_is_hardened(tmp_path: Path) -> None:
    unit = (ROOT / "systemd" / "storage-server.service").read_text()
    assert "Type=notify" in unit
    assert "Restart=on-failure" in unit
    installed = tmp_path / "storage-server.service"  # as installed from this checkout
    installed.write_text(
        unit.replace("/opt/storage-server/.venv/bin/python", sys.executable).replace(
            "/opt/storage-server", str(ROOT)
        )
    )
    verify = subprocess.run(["systemd-analyze", "verify", str(installed)], capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(installed)],
        capture_output=True,
        text=True,
    )
    exposure = float(re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout).group(1))  # type: ignore[union-attr]
    print(f"systemd-analyze security exposure: {exposure}")
    assert exposure <= 2.0, security.stdout[-3000:]


def test_sigterm_to_the_whole_group_stops_cleanly_without_restarts(start: type[Service]) -> None:
    # What `pkill` or systemd's default KillMode does: every process gets SIGTERM, the workers
    # once from the signal and once more from the supervisor.
    service = start("--workers", "2")
    service.wait_ready(workers=2)
    os.killpg(service.proc.pid, signal.SIGTERM)
    assert service.proc.wait(20) == 0
    time.sleep(0.2)
    assert children(service.proc.pid) == []
    output = service.output()
    assert "restarting" not in output
    assert "worker listening" in output
    assert output.count("worker listening") == 2
