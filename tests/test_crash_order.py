"""Crash ordering, read off the worker's system calls (strace): a 201 is sent only after the
bytes were written and fsynced, the file renamed into place and its folder fsynced; an fsync
that fails (EIO, injected) fails the upload with a 5xx and stores nothing."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

from storage_server import blobfs
from tests.service import Service, children


def traced(service: Service, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """strace every thread of the (only) worker until stopped."""
    worker = children(service.proc.pid)[0]
    threads = os.listdir(f"/proc/{worker}/task")
    args = ["strace", "-f", "-qq", "-s", "64", "-o", str(log), *extra]
    for tid in threads:
        args += ["-p", tid]
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    proc.wait(10)


def first(lines: list[str], pattern: str, after: int = 0) -> tuple[int, re.Match[str]]:
    regex = re.compile(pattern)
    for number, line in enumerate(lines[after:], after):
        if found := regex.search(line):
            return number, found
    raise AssertionError(f"no line matches {pattern!r} after line {after}:\n" + "\n".join(lines[after:][:80]))


def started(start: type[Service]) -> Service:
    service = start("--workers", "1", "--access-log", "off")
    service.wait_ready(workers=1)
    assert service.request("POST", "/api/v1/buckets", b'{"name": "photos"}')[0] == 201
    for _ in range(8):  # warm the worker's thread pool, so that every thread gets traced
        service.request("GET", "/health")
    return service


def test_201_comes_after_write_fsync_rename_and_folder_fsync(start: type[Service], tmp_path: Path) -> None:
    service = started(start)
    log = tmp_path / "strace.log"
    tracer = traced(
        service, log, "-e", "trace=openat,write,pwrite64,fsync,rename,renameat,renameat2,sendto,writev"
    )
    try:
        assert service.request("PUT", "/api/v1/files/photos/deep/k.bin", b"payload bytes")[0] == 201
    finally:
        stop(tracer)
    lines = log.read_text().splitlines()
    at_open, opened = first(lines, r'openat\(AT_FDCWD, "[^"]*\.part", O_WRONLY\|O_CREAT\|O_EXCL.*= (\d+)$')
    fd = opened.group(1)
    at_write, _ = first(lines, rf"write\({fd}, \"payload bytes\", 13\) += 13", at_open)
    at_fsync, _ = first(lines, rf"fsync\({fd}\) += 0", at_write)
    at_rename, renamed = first(
        lines, r'rename\w*\(AT_FDCWD, "[^"]*\.part", (\d+), "k\.bin"(, \w+)?\) += 0', at_fsync
    )
    at_dir_fsync, _ = first(lines, rf"fsync\({renamed.group(1)}\) += 0", at_rename)
    at_answer, _ = first(lines, r"(write|sendto|writev)\(\d+, .*HTTP/1\.1 201", at_dir_fsync)
    assert at_open < at_write < at_fsync < at_rename < at_dir_fsync < at_answer
    assert (service.data / "photos" / "deep" / "k.bin").read_bytes() == b"payload bytes"


def test_an_fsync_error_fails_the_upload_and_stores_nothing(start: type[Service], tmp_path: Path) -> None:
    service = started(start)
    assert service.request("PUT", "/api/v1/files/photos/k.bin", b"previous")[0] == 201
    tracer = traced(service, tmp_path / "inject.log", "-e", "trace=fsync", "-e", "inject=fsync:error=EIO")
    try:
        status, body = service.request("PUT", "/api/v1/files/photos/k.bin", b"new version")
    finally:
        stop(tracer)
    assert 500 <= status < 600
    assert b"internal_error" in body
    assert b"Input/output" not in body  # no exception text leaks
    assert os.listdir(service.data / blobfs.INTERNAL_DIR / "tmp") == []
    assert service.request("GET", "/api/v1/files/photos/k.bin") == (200, b"previous")
    assert service.request("PUT", "/api/v1/files/photos/k.bin", b"after recovery")[0] == 201


def test_a_large_upload_starts_writeback_as_it_streams_and_still_fsyncs_before_its_201(
    start: type[Service], tmp_path: Path
) -> None:
    service = started(start)
    log = tmp_path / "strace.log"
    tracer = traced(
        service, log, "-e", "trace=openat,sync_file_range,fsync,rename,renameat,renameat2,sendto,writev,write"
    )
    body = os.urandom(20 * 1024 * 1024)
    try:
        assert service.request("PUT", "/api/v1/files/photos/big.bin", body)[0] == 201
    finally:
        stop(tracer)
    lines = [line for line in log.read_text().splitlines() if "write(" not in line or "HTTP/1.1" in line]
    at_open, opened = first(lines, r'openat\(AT_FDCWD, "[^"]*\.part", O_WRONLY\|O_CREAT\|O_EXCL.*= (\d+)$')
    fd = opened.group(1)
    at_writeback, _ = first(lines, rf"sync_file_range\({fd}, 0, \d+, SYNC_FILE_RANGE_WRITE\) += 0", at_open)
    at_second, _ = first(
        lines, rf"sync_file_range\({fd}, [1-9]\d*, \d+, SYNC_FILE_RANGE_WRITE\) += 0", at_writeback
    )
    at_fsync, _ = first(lines, rf"fsync\({fd}\) += 0", at_second)
    at_answer, _ = first(lines, r"(write|sendto|writev)\(\d+, .*HTTP/1\.1 201", at_fsync)
    assert at_open < at_writeback < at_second < at_fsync < at_answer
    assert (service.data / "photos" / "big.bin").read_bytes() == body
