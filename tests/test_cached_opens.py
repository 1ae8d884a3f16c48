"""Hot files are opened on the event loop (fs/cached.py): only a file whose path, record and
first bytes are already in memory, never a stale record, never through a symlink; the service
serves such a file without a trip to a worker thread (read off strace)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from storage_server.blobfs import BlobStore
from storage_server.fs import cached
from storage_server.store.errors import InvalidKey
from tests.service import Service, children
from tests.test_crash_order import first, started, stop, traced

SETTLE = cached.SETTLED_NS / 1e9 + 0.05


def put(store: BlobStore, key: str, data: bytes, bucket: str = "photos") -> None:
    upload = store.begin_upload(bucket, key)
    upload.write(data)
    upload.commit(content_type="application/octet-stream", name=key.rsplit("/", 1)[-1])


def hot(store: BlobStore, key: str, head: int = 1 << 16) -> tuple[str, bytes] | None:
    """What an open on the loop finds: the record's sha256 and the first bytes, or None."""
    opened = store.open_cached("photos", key, head=head)
    if opened is None:
        return None
    reader, first_bytes = opened
    try:
        return reader.record.sha256, first_bytes + reader.read(1 << 20)
    finally:
        reader.close()


def read_once(store: BlobStore, key: str) -> None:
    """An ordinary open, as a thread does: it teaches the cache the file's record."""
    store.open_file("photos", key).close()


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    blob = BlobStore(tmp_path / "data")
    blob.prepare()
    blob.create_bucket("photos")
    return blob


def test_a_file_is_opened_on_the_loop_only_once_its_record_is_known(store: BlobStore) -> None:
    put(store, "a/b/c.bin", b"hot bytes")
    assert hot(store, "a/b/c.bin") is None  # never read by this process
    time.sleep(SETTLE)
    read_once(store, "a/b/c.bin")
    found = hot(store, "a/b/c.bin")
    assert found is not None
    assert found[1] == b"hot bytes"
    found = hot(store, "a/b/c.bin", head=3)
    assert found is not None
    assert found[1] == b"hot bytes"  # 3 with the open, the rest read after
    assert hot(store, "a/b/missing.bin") is None
    with pytest.raises(InvalidKey):
        store.open_cached("photos", "a/../../etc/passwd", head=10)


def test_a_record_just_changed_is_not_kept(store: BlobStore) -> None:
    put(store, "k.bin", b"fresh")
    read_once(store, "k.bin")  # within SETTLED_NS of its creation: a tick could hide a change
    assert hot(store, "k.bin") is None


def test_an_overwrite_a_damage_mark_or_a_move_is_never_answered_from_an_old_record(store: BlobStore) -> None:
    put(store, "k.bin", b"version one")
    time.sleep(SETTLE)
    read_once(store, "k.bin")
    assert hot(store, "k.bin") is not None
    put(store, "k.bin", b"version two")  # a new inode
    assert hot(store, "k.bin") is None
    time.sleep(SETTLE)
    read_once(store, "k.bin")
    found = hot(store, "k.bin")
    assert found is not None
    assert found[1] == b"version two"

    record = store.open_file("photos", "k.bin").record
    assert store.mark_damaged(record, found_sha256="0" * 64, found_size=record.size)
    opened = store.open_cached("photos", "k.bin", head=100)
    assert opened is None or opened[0].record.damaged is not None  # the mark changed the inode's ctime

    put(store, "m.bin", b"moving")
    time.sleep(SETTLE)
    read_once(store, "m.bin")
    store.move_file("photos", "m.bin", "photos", "moved.bin")
    assert hot(store, "m.bin") is None
    assert hot(store, "moved.bin") is None  # the record it knew names the old key


def test_a_symlink_is_never_followed_even_to_a_hot_file(store: BlobStore) -> None:
    put(store, "target.bin", b"target")
    time.sleep(SETTLE)
    read_once(store, "target.bin")
    assert hot(store, "target.bin") is not None
    os.symlink("target.bin", store.root / "photos" / "link.bin")
    os.symlink(store.root / "photos", store.root / "photos" / "dir")
    assert hot(store, "link.bin") is None
    assert hot(store, "dir/target.bin") is None


def test_the_service_serves_a_hot_file_from_the_event_loop(start: type[Service], tmp_path: Path) -> None:
    service = started(start)
    body = os.urandom(3000)
    assert service.request("PUT", "/api/v1/files/photos/hot.bin", body)[0] == 201
    time.sleep(SETTLE)
    assert service.request("GET", "/api/v1/files/photos/hot.bin") == (200, body)  # learns the record
    loop = str(children(service.proc.pid)[0])  # the worker's main thread: its event loop
    log = tmp_path / "strace.log"
    tracer = traced(service, log, "-e", "trace=openat,openat2,preadv2,pread64")
    try:
        assert service.request("GET", "/api/v1/files/photos/hot.bin") == (200, body)
    finally:
        stop(tracer)
    lines = log.read_text().splitlines()
    at_open, opened = first(lines, r'^(\d+) +openat2\(\d+, "photos/hot\.bin", .*= \d+$')
    assert opened.group(1) == loop, "the hot file was opened off the event loop"
    _, read = first(lines, r"^(\d+) +preadv2\(\d+, .*RWF_NOWAIT\) = 3000$", at_open)
    assert read.group(1) == loop
    assert not [line for line in lines if "hot.bin" in line and not line.startswith(loop + " ")]
