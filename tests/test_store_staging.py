"""The store contract's staged uploads (S3 multipart, tus), on every backend: parts written over
many calls, committed as one file through the ordinary commit, with the same limits and
conditions; aborted, expired, locked."""

from __future__ import annotations

import hashlib

import pytest

from storage_server.store import Store
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
from tests.stored import stored


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
    assert (only.size, only.sha256) == (22, hashlib.sha256(b"small chunks coalesced").hexdigest())
    assert done(store, staged.id, [1]).size == 22
    assert stored(store, bucket, "a.bin") == b"small chunks coalesced"
