"""Group commit (fs/commit.py): uploads that commit at the same time share one pass under the
bucket's locks and one fsync per folder, and each one is still answered only after its bytes,
its rename and its folder are on disk; kill -9 amid concurrent commits loses nothing answered."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from storage_server import blobfs
from storage_server.blobfs import BlobStore
from storage_server.store.errors import Conflict, PreconditionFailed
from storage_server.store.records import FileRecord
from tests.service import Service, children
from tests.test_crash_order import first, started, stop, traced
from tests.test_torture import files_on_disk, scaled, wait_for_workers

UPLOADS = 8


@contextmanager
def mutation_lock_held(data: Path, bucket: str) -> Iterator[None]:
    """Hold the bucket's mutation lock from outside, as another worker's pass would."""
    fd = os.open(data / blobfs.INTERNAL_DIR / "locks" / f"{bucket}.lock", os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def completed(text: str) -> list[str]:
    """strace -f lines with each call split by another thread's (`... <unfinished ...>`, then
    `<... call resumed>`) joined into one line, placed where the call returned."""
    pending: dict[str, str] = {}
    lines = []
    for line in text.splitlines():
        tid, _, rest = line.partition(" ")
        rest = rest.lstrip()  # strace pads the thread id to a width
        if rest.endswith("<unfinished ...>"):
            pending[tid] = rest.removesuffix("<unfinished ...>").rstrip()
        elif rest.startswith("<... ") and tid in pending:
            lines.append(f"{tid} {pending.pop(tid)}{rest.split('resumed>', 1)[1]}")
        else:
            lines.append(line)
    return lines


def wait_until(predicate: object, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_concurrent_uploads_share_a_pass_and_each_is_synced_before_its_201(
    start: type[Service], tmp_path: Path
) -> None:
    service = started(start)
    log = tmp_path / "strace.log"
    tracer = traced(
        service,
        log,
        "-y",
        "-s",
        "256",
        "-e",
        "trace=openat,write,fsync,close,rename,renameat,renameat2,sendto,writev",
    )
    bodies = {f"k{n}.bin": f"payload {n} ".encode() * (n + 1) for n in range(UPLOADS)}
    try:
        with ThreadPoolExecutor(UPLOADS) as pool, mutation_lock_held(service.data, "photos"):
            answers = [
                pool.submit(service.request, "PUT", f"/api/v1/files/photos/{k}", b) for k, b in bodies.items()
            ]
            # Every upload has written and fsynced its temp file and waits for the held lock.
            wait_until(
                lambda: sum("fsync(" in line for line in completed(log.read_text())) >= UPLOADS,
                "the file fsyncs",
            )
            time.sleep(0.2)
        statuses = [answer.result()[0] for answer in answers]
    finally:
        stop(tracer)
    assert statuses == [201] * UPLOADS
    lines = completed(log.read_text())
    folder = str(service.data / "photos")
    renames = [n for n, line in enumerate(lines) if re.search(r"rename\w*\(AT_FDCWD[^,]*, .*\.part", line)]
    assert len(renames) == UPLOADS
    for key, body in bodies.items():
        # This upload's temp file, found by its bytes, followed to its answer (strace -y names
        # the file or folder behind each descriptor).
        at_write, wrote = first(lines, rf'write\(\d+<([^>]*\.part)>, "{re.escape(body.decode()[:40])}')
        temp = re.escape(wrote.group(1))
        at_fsync, _ = first(lines, rf"fsync\(\d+<{temp}>\) += 0", at_write)
        at_rename, _ = first(
            lines, rf'rename\w*\(AT_FDCWD[^,]*, "{temp}", \d+<{re.escape(folder)}>, "{key}"', at_fsync
        )
        at_folder_fsync, _ = first(lines, rf"fsync\(\d+<{re.escape(folder)}>\) += 0", at_rename)
        at_answer, _ = first(
            lines, rf'(write|sendto|writev)\(\d+<[^>]*>, "HTTP/1\.1 201.*{key}', at_folder_fsync
        )
        assert at_write < at_fsync < at_rename < at_folder_fsync < at_answer, key
        assert (service.data / "photos" / key).read_bytes() == body
    # Eight renames, the folder synced once or twice (the first upload may lead a pass alone).
    folder_fsyncs = sum(bool(re.search(rf"fsync\(\d+<{re.escape(folder)}>\)", line)) for line in lines)
    assert 1 <= folder_fsyncs <= 2, f"{folder_fsyncs} folder fsyncs for {UPLOADS} renames"


def test_one_pass_gives_each_upload_its_own_outcome_and_counts_once(tmp_path: Path) -> None:
    store = BlobStore(tmp_path / "data")
    store.prepare()
    store.create_bucket("photos")
    for key, data in (("exists.bin", b"old"), ("folder/inside.bin", b"x")):  # 2 files, 4 bytes
        upload = store.begin_upload("photos", key)
        upload.write(data)
        upload.commit(content_type="application/octet-stream", name=key)

    def create_only(current: FileRecord | None) -> None:
        if current is not None:
            raise PreconditionFailed("the key exists")

    jobs = [(f"new-{n}.bin", b"n" * (n + 1), None) for n in range(5)]
    jobs += [("exists.bin", b"refused", create_only), ("taken.bin", b"in the way", None)]
    uploads = []
    for key, data, precondition in jobs:
        upload = store.begin_upload("photos", key)
        upload.write(data)
        uploads.append((upload, key, precondition))
    (store.root / "photos" / "taken.bin").mkdir()  # a folder appears where an upload is going
    passes_before = store.committer.passes
    outcomes: dict[str, object] = {}
    with ThreadPoolExecutor(len(uploads)) as pool, mutation_lock_held(store.root, "photos"):

        def commit(upload: blobfs.Upload, key: str, precondition: object) -> None:
            try:
                outcomes[key] = upload.commit(
                    content_type="application/octet-stream",
                    name=key,
                    precondition=precondition,  # type: ignore[arg-type]
                )
            except Exception as exc:
                outcomes[key] = exc

        futures = [pool.submit(commit, *job) for job in uploads]
        time.sleep(1.0)  # all of them reach the queue: one leads a pass, blocked on the lock
    for future in futures:
        future.result()
    assert store.committer.passes - passes_before <= 2  # the blocked leader's pass, then the rest
    assert isinstance(outcomes["exists.bin"], PreconditionFailed)
    assert isinstance(outcomes["taken.bin"], Conflict)
    for n in range(5):
        record = outcomes[f"new-{n}.bin"]
        assert isinstance(record, FileRecord)
        assert record.sha256 == hashlib.sha256(b"n" * (n + 1)).hexdigest()
        assert (store.root / "photos" / f"new-{n}.bin").read_bytes() == b"n" * (n + 1)
    assert (store.root / "photos" / "exists.bin").read_bytes() == b"old"
    bucket = store.get_bucket("photos")
    assert (bucket.file_count, bucket.total_size) == (7, 3 + 1 + sum(range(1, 6)))
    assert os.listdir(store.tmp) == []


@pytest.mark.timeout(seconds=240)
def test_kill_9_amid_concurrent_commits_keeps_every_answered_upload(start: type[Service]) -> None:
    service = start("--workers", "1", "--access-log", "off")
    service.wait_ready(workers=1)
    assert service.request("POST", "/api/v1/buckets", b'{"name": "photos"}')[0] == 201
    answered: dict[str, bytes] = {}  # key -> the last version answered 201
    in_flight: dict[str, bytes] = {}  # key -> a version sent but not answered when the worker died
    for trial in range(scaled(20, 3)):
        worker = children(service.proc.pid)[0]
        killed = threading.Event()
        lock = threading.Lock()

        def client(
            number: int, trial: int = trial, killed: threading.Event = killed, lock: threading.Lock = lock
        ) -> None:
            round_ = 0
            while not killed.is_set():
                key = f"c{number}/k{round_ % 3}.bin"
                body = f"trial {trial} client {number} round {round_} ".encode() * 50
                with lock:
                    in_flight[key] = body
                try:
                    status, _ = service.request("PUT", f"/api/v1/files/photos/{key}", body)
                except OSError:
                    return  # the worker died under this request: that version may or may not be in
                with lock:
                    del in_flight[key]
                    assert status == 201, status
                    answered[key] = body
                round_ += 1

        with ThreadPoolExecutor(16) as pool:
            futures = [pool.submit(client, n) for n in range(16)]
            time.sleep(0.6)
            os.kill(worker, signal.SIGKILL)
            killed.set()
            for future in futures:
                future.result()
        wait_for_workers(service, 1, gone=worker)
        for key in set(answered) | set(in_flight):
            status, body = service.request("GET", f"/api/v1/files/photos/{key}")
            if status == 404:
                assert key not in answered, f"trial {trial}: {key} was answered 201 and is lost"
                continue
            assert status == 200
            assert body in (answered.get(key), in_flight.get(key)), f"trial {trial}: {key} is torn or stale"
            answered[key] = body
        in_flight.clear()
    service.stop()
    restarted = start("--workers", "1", "--access-log", "off")
    restarted.wait_ready(workers=1)
    on_disk = files_on_disk(restarted.data, "photos")
    assert on_disk == {key: hashlib.sha256(body).hexdigest() for key, body in answered.items()}
    status, body = restarted.request("GET", "/api/v1/buckets/photos")
    assert status == 200
    assert json.loads(body)["file_count"] == len(answered)
