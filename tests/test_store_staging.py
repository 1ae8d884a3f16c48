"""The store contract's staged uploads (S3 multipart, tus), on every backend: parts written over
many calls, committed as one file through the ordinary commit, with the same limits and
conditions; aborted, expired, locked; a part grown by appends hashed once, again after its
running digests were lost (another process), and, on the filesystem, grown in place, committed
without a copy, and whole after a process killed mid-chunk."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from storage_server.blobfs import BlobStore
from storage_server.store import Store
from storage_server.store.assemble import RUNNING
from storage_server.store.errors import (
    BucketNotFound,
    InvalidKey,
    InvalidPart,
    Locked,
    NoSuchUpload,
    PreconditionFailed,
    TooLarge,
)
from storage_server.store.records import FileRecord
from tests.stored import stored, temp_files


@pytest.fixture
def bucket(store: Store) -> str:
    store.create_bucket("photos")
    return "photos"


def part(store: Store, upload_id: str, number: int, data: bytes) -> None:
    writer = store.begin_part(upload_id, number)
    writer.write(data)
    writer.commit()


def done(store: Store, upload_id: str, numbers: list[int], **kwargs: object) -> FileRecord:
    return store.complete_staged(
        upload_id, numbers, content_type="application/octet-stream", name="n", **kwargs
    )  # type: ignore[arg-type]


def test_a_staged_upload_keeps_its_key_and_info(store: Store, bucket: str) -> None:
    staged = store.begin_staged(bucket, "dir/big.bin", info={"protocol": "tus", "length": "10"})
    again = store.get_staged(staged.id)
    assert (again.bucket, again.key, again.info, again.parts) == (bucket, "dir/big.bin", staged.info, [])
    assert [s.id for s in store.list_staged(bucket)] == [staged.id]


def test_parts_are_listed_with_their_digests_and_a_part_written_again_replaces_the_first(
    store: Store, bucket: str
) -> None:
    staged = store.begin_staged(bucket, "a.bin")
    part(store, staged.id, 2, b"second")
    part(store, staged.id, 1, b"first, too long")
    part(store, staged.id, 1, b"first")
    parts = store.get_staged(staged.id).parts
    assert [(p.number, p.size) for p in parts] == [(1, 5), (2, 6)]
    assert parts[0].md5 == hashlib.md5(b"first").hexdigest()
    assert parts[1].sha256 == hashlib.sha256(b"second").hexdigest()


def test_completing_commits_the_parts_in_order_as_one_file_and_removes_the_staged_upload(
    store: Store, bucket: str
) -> None:
    staged = store.begin_staged(bucket, "a.bin")
    chunks = [bytes([i]) * (100_000 + i) for i in range(1, 4)]
    for number, chunk in enumerate(chunks, start=1):
        part(store, staged.id, number, chunk)
    record = done(store, staged.id, [1, 2, 3], md5=True)
    whole = b"".join(chunks)
    assert stored(store, bucket, "a.bin") == whole
    assert (record.size, record.sha256, record.md5) == (
        len(whole),
        hashlib.sha256(whole).hexdigest(),
        hashlib.md5(whole).hexdigest(),
    )
    with pytest.raises(NoSuchUpload):
        store.get_staged(staged.id)
    assert store.list_staged(bucket) == []


def test_completing_with_a_part_never_uploaded_fails_and_keeps_the_staged_upload(
    store: Store, bucket: str
) -> None:
    staged = store.begin_staged(bucket, "a.bin")
    part(store, staged.id, 1, b"one")
    with pytest.raises(InvalidPart):
        done(store, staged.id, [1, 2])
    assert stored(store, bucket, "a.bin") is None
    assert [p.number for p in store.get_staged(staged.id).parts] == [1]


def test_a_failed_precondition_or_limit_keeps_the_old_file_and_the_staged_upload(
    store: Store, bucket: str
) -> None:
    upload = store.begin_upload(bucket, "a.bin")
    upload.write(b"old")
    upload.commit(content_type="text/plain", name="a.bin")
    staged = store.begin_staged(bucket, "a.bin")
    part(store, staged.id, 1, b"new bytes")

    def create_only(current: FileRecord | None) -> None:
        if current is not None:
            raise PreconditionFailed("exists")

    with pytest.raises(PreconditionFailed):
        done(store, staged.id, [1], precondition=create_only)
    store.create_bucket("small", file_size_limit=4)
    tiny = store.begin_staged("small", "b.bin")
    part(store, tiny.id, 1, b"12345")
    with pytest.raises(TooLarge):
        done(store, tiny.id, [1])
    assert stored(store, bucket, "a.bin") == b"old"
    assert stored(store, "small", "b.bin") is None
    assert store.get_staged(staged.id).parts[0].size == 9


def test_an_aborted_upload_is_gone_for_every_call(store: Store, bucket: str) -> None:
    staged = store.begin_staged(bucket, "a.bin")
    part(store, staged.id, 1, b"one")
    store.abort_staged(staged.id)
    for call in (
        lambda: store.get_staged(staged.id),
        lambda: store.begin_part(staged.id, 2),
        lambda: done(store, staged.id, [1]),
        lambda: store.abort_staged(staged.id),
    ):
        with pytest.raises(NoSuchUpload):
            call()


def test_a_part_being_written_when_its_upload_is_aborted_is_not_kept(store: Store, bucket: str) -> None:
    staged = store.begin_staged(bucket, "a.bin")
    writer = store.begin_part(staged.id, 1)
    writer.write(b"late")
    store.abort_staged(staged.id)
    with pytest.raises(NoSuchUpload):
        writer.commit()
    with pytest.raises(NoSuchUpload):
        store.get_staged(staged.id)


def test_one_exclusive_writer_at_a_time(store: Store, bucket: str) -> None:
    staged = store.begin_staged(bucket, "a.bin")
    first = store.begin_part(staged.id, 1, exclusive=True)
    with pytest.raises(Locked):
        store.begin_part(staged.id, 2, exclusive=True)
    first.write(b"x")
    first.commit()
    second = store.begin_part(staged.id, 2, exclusive=True)
    second.abort()
    store.begin_part(staged.id, 2, exclusive=True).abort()


def test_bad_part_numbers_ids_buckets_and_keys_are_refused(store: Store, bucket: str) -> None:
    staged = store.begin_staged(bucket, "a.bin")
    for number in (0, 10_001):
        with pytest.raises(InvalidPart):
            store.begin_part(staged.id, number)
    for upload_id in ("../../etc", "0" * 32, "", "A" * 32):
        with pytest.raises(NoSuchUpload):
            store.get_staged(upload_id)
    with pytest.raises(BucketNotFound):
        store.begin_staged("no-such-bucket", "a")
    with pytest.raises(InvalidKey):
        store.begin_staged(bucket, "a//b")


def test_the_sweep_removes_staged_uploads_only_once_expired(store: Store, bucket: str) -> None:
    staged = store.begin_staged(bucket, "a.bin")
    part(store, staged.id, 1, b"one")
    assert store.sweep_staged() == 0  # type: ignore[attr-defined]
    assert store.get_staged(staged.id).parts
    assert store.sweep_staged(expiry=-60) == 1  # type: ignore[attr-defined]
    with pytest.raises(NoSuchUpload):
        store.get_staged(staged.id)


def test_a_part_can_be_extended_in_several_calls(store: Store, bucket: str) -> None:
    staged = store.begin_staged(bucket, "a.bin")
    for chunk in (b"small ", b"chunks ", b"coalesced"):
        writer = store.begin_part(staged.id, 1, exclusive=True, append=True)
        writer.write(chunk)
        writer.commit()
    (only,) = store.get_staged(staged.id).parts
    whole = hashlib.sha256(b"small chunks coalesced").hexdigest()
    assert (only.size, only.sha256) == (22, "" if store.appends_in_place else whole)
    assert (done(store, staged.id, [1]).size, done_sha256(store, bucket)) == (22, whole)
    assert stored(store, bucket, "a.bin") == b"small chunks coalesced"


def done_sha256(store: Store, bucket: str, key: str = "a.bin") -> str:
    reader = store.open_file(bucket, key)
    reader.close()
    return reader.record.sha256


def grow(store: Store, upload_id: str, data: bytes) -> None:
    writer = store.begin_part(upload_id, 1, exclusive=True, append=True)
    writer.write(data)
    writer.commit()


def test_a_part_grown_after_its_running_digests_were_lost_is_hashed_again_and_committed_right(
    store: Store, bucket: str
) -> None:
    staged = store.begin_staged(bucket, "a.bin")
    chunks = [bytes([n]) * (300_000 + n) for n in range(4)]
    grow(store, staged.id, chunks[0])
    grow(store, staged.id, chunks[1])
    RUNNING.forget_all()  # as in another worker, or after a restart
    grow(store, staged.id, chunks[2])
    grow(store, staged.id, chunks[3])
    whole = b"".join(chunks)
    (only,) = store.get_staged(staged.id).parts
    assert only.size == len(whole)
    record = done(store, staged.id, [1], md5=True)
    assert (record.size, record.sha256, record.md5) == (
        len(whole),
        hashlib.sha256(whole).hexdigest(),
        hashlib.md5(whole).hexdigest(),
    )
    assert stored(store, bucket, "a.bin") == whole


def test_a_grown_part_whose_digests_were_lost_just_before_completion_is_hashed_at_completion(
    store: Store, bucket: str
) -> None:
    staged = store.begin_staged(bucket, "a.bin")
    for chunk in (b"x" * 700_000, b"y" * 5):
        grow(store, staged.id, chunk)
    RUNNING.forget_all()
    record = done(store, staged.id, [1], md5=True)
    whole = b"x" * 700_000 + b"y" * 5
    assert (record.sha256, record.md5) == (hashlib.sha256(whole).hexdigest(), hashlib.md5(whole).hexdigest())


def test_completing_while_an_exclusive_part_is_written_is_locked(store: Store, bucket: str) -> None:
    staged = store.begin_staged(bucket, "a.bin")
    grow(store, staged.id, b"first")
    writer = store.begin_part(staged.id, 1, exclusive=True, append=True)
    writer.write(b" second")
    if isinstance(store, BlobStore):
        with pytest.raises(Locked):
            done(store, staged.id, [1])
    writer.commit()
    assert done(store, staged.id, [1]).size == len(b"first second")
    assert stored(store, bucket, "a.bin") == b"first second"


def part_file(store: BlobStore, upload_id: str) -> Path:
    return store.staged / upload_id / "00001.part"


@pytest.mark.fs_only
def test_a_single_part_becomes_the_file_itself_with_no_byte_copied_and_no_staged_leftover(
    store: Store, bucket: str
) -> None:
    assert isinstance(store, BlobStore)
    staged = store.begin_staged(bucket, "dir/a.bin")
    grow(store, staged.id, b"x" * 1_000_000)
    grow(store, staged.id, b"y" * 10)
    inode = part_file(store, staged.id).stat().st_ino
    record = done(store, staged.id, [1])
    path = store.root / bucket / "dir" / "a.bin"
    info = path.stat()
    assert (info.st_ino, info.st_nlink, info.st_mode & 0o777) == (inode, 1, 0o644)
    assert [a for a in os.listxattr(path) if "part" in a] == []
    assert (record.size, record.md5) == (1_000_010, None)
    assert temp_files(store) == []
    assert store.get_bucket(bucket).total_size == 1_000_010


@pytest.mark.fs_only
def test_a_failed_commit_leaves_the_grown_part_whole_and_growing(store: Store, bucket: str) -> None:
    assert isinstance(store, BlobStore)
    upload = store.begin_upload(bucket, "a.bin")
    upload.write(b"old")
    upload.commit(content_type="text/plain", name="a.bin")
    staged = store.begin_staged(bucket, "a.bin")
    grow(store, staged.id, b"new ")

    def create_only(current: FileRecord | None) -> None:
        if current is not None:
            raise PreconditionFailed("exists")

    with pytest.raises(PreconditionFailed):
        done(store, staged.id, [1], precondition=create_only)
    assert temp_files(store) == []
    assert part_file(store, staged.id).stat().st_nlink == 1
    grow(store, staged.id, b"bytes")
    assert done(store, staged.id, [1]).sha256 == hashlib.sha256(b"new bytes").hexdigest()
    assert stored(store, bucket, "a.bin") == b"new bytes"


@pytest.mark.fs_only
def test_a_part_that_is_also_a_committed_file_is_never_changed_in_place(store: Store, bucket: str) -> None:
    assert isinstance(store, BlobStore)
    staged = store.begin_staged(bucket, "a.bin")
    grow(store, staged.id, b"committed")
    linked = store.root / bucket / "linked.bin"
    os.link(part_file(store, staged.id), linked)  # as a completion cut short by a crash leaves it
    grow(store, staged.id, b" and more")
    assert linked.read_bytes() == b"committed"
    assert done(store, staged.id, [1]).size == len(b"committed and more")
    assert stored(store, bucket, "a.bin") == b"committed and more"


CHILD = """
import os, signal, sys
from pathlib import Path
from storage_server.backends import open_store
from storage_server.settings import Settings

store = open_store(Settings(path=Path(sys.argv[1])))
upload_id, step = sys.argv[2], sys.argv[3]
writer = store.begin_part(upload_id, 1, exclusive=True, append=True)
writer.write(b"a" * 700_000)
if step == "commit":
    writer.commit()
    print(store.get_staged(upload_id).parts[0].size, flush=True)
else:  # killed mid-chunk: its bytes are in the part file, past the part's record
    os.kill(os.getpid(), signal.SIGKILL)
"""


def child(store: BlobStore, upload_id: str, step: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(store.root), upload_id, step],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.fs_only
def test_an_upload_resumed_in_a_fresh_process_commits_with_the_right_digests(
    store: Store, bucket: str
) -> None:
    assert isinstance(store, BlobStore)
    staged = store.begin_staged(bucket, "a.bin")
    grow(store, staged.id, b"b" * 500_000)
    answer = child(store, staged.id, "commit")
    assert (answer.returncode, answer.stdout.strip()) == (0, "1200000"), answer.stderr
    grow(store, staged.id, b"c" * 300_000)  # this process's running digests stop at 500,000
    whole = b"b" * 500_000 + b"a" * 700_000 + b"c" * 300_000
    record = done(store, staged.id, [1], md5=True)
    assert (record.sha256, record.md5) == (hashlib.sha256(whole).hexdigest(), hashlib.md5(whole).hexdigest())
    assert stored(store, bucket, "a.bin") == whole


@pytest.mark.fs_only
def test_a_process_killed_between_two_chunks_loses_nothing_acknowledged(store: Store, bucket: str) -> None:
    assert isinstance(store, BlobStore)
    staged = store.begin_staged(bucket, "a.bin")
    grow(store, staged.id, b"acknowledged")
    answer = child(store, staged.id, "kill")
    assert answer.returncode == -signal.SIGKILL, answer.stderr
    assert part_file(store, staged.id).stat().st_size > len(b"acknowledged")  # the cut chunk's bytes
    (only,) = store.get_staged(staged.id).parts
    assert only.size == len(b"acknowledged")
    grow(store, staged.id, b" then resumed")
    record = done(store, staged.id, [1], md5=True)
    assert stored(store, bucket, "a.bin") == b"acknowledged then resumed"
    assert record.sha256 == hashlib.sha256(b"acknowledged then resumed").hexdigest()
