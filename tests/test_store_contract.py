"""The store contract (`storage_server/store/contract.py`) checked on the store itself, no HTTP:
every backend runs every test here (conftest.py parametrizes `backend`)."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from storage_server.store import BucketChanges, FileRecord, ScrubState, Store, now
from storage_server.store.errors import (
    BucketNotFound,
    Conflict,
    Damaged,
    FileChanged,
    FileNotFound,
    InvalidKey,
    InvalidName,
    PreconditionFailed,
)
from tests.stored import contents, stored, temp_files

BAD_KEYS = ["", "a//b", "../x", "a/./b", "/a"]
BAD_NAMES = ["A", "ab", "-abc", "a_b"]
MiB = 1 << 20


def put(store: Store, bucket: str, key: str, data: bytes, *, md5: bool = False, **commit: Any) -> FileRecord:
    """Upload `data` in one write and commit it (`commit`: metadata, precondition); nothing is
    left of the upload if that fails."""
    upload = store.begin_upload(bucket, key, md5=md5)
    try:
        upload.write(data)
        return upload.commit(content_type="text/plain", name=key.rsplit("/", 1)[-1], **commit)
    finally:
        upload.abort()


def read(store: Store, bucket: str, key: str, *, stream: bool = False, chunk: int = 1000) -> bytes:
    reader = store.open_file(bucket, key, stream=stream)
    try:
        return b"".join(iter(lambda: reader.read(chunk), b""))
    finally:
        reader.close()


def record_of(store: Store, bucket: str, key: str) -> FileRecord:
    reader = store.open_file(bucket, key)
    reader.close()
    return reader.record


def create_only(current: FileRecord | None) -> None:
    if current is not None:
        raise PreconditionFailed("the key already holds a file")


def refuse(current: FileRecord | None) -> None:
    raise PreconditionFailed("refused")


def utf8_order(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def paths(store: Store, bucket: str, prefix: str = "") -> list[str]:
    return [f.path for f in store.list_files(bucket, prefix=prefix).files]


@pytest.fixture
def bucket(store: Store) -> str:
    store.create_bucket("photos")
    return "photos"


def test_create_bucket_returns_the_new_bucket_then_the_existing_one_untouched(store: Store) -> None:
    first, created = store.create_bucket("photos", public=True, description="holidays")
    assert created is True
    assert (first.name, first.public, first.description, first.file_count) == ("photos", True, "holidays", 0)
    put(store, "photos", "keep.txt", b"kept")
    again, created_again = store.create_bucket("photos", public=False, description=None)
    assert created_again is False
    assert (again.public, again.description, again.created_at) == (True, "holidays", first.created_at)
    assert read(store, "photos", "keep.txt") == b"kept"


def test_list_buckets_is_sorted_by_name(store: Store) -> None:
    for name in ("zeta", "alpha", "mid-1"):
        store.create_bucket(name)
    assert [b.name for b in store.list_buckets()] == ["alpha", "mid-1", "zeta"]


def test_get_bucket_counts_files_and_bytes_after_uploads_and_deletes(store: Store, bucket: str) -> None:
    put(store, bucket, "a.txt", b"abc")
    put(store, bucket, "deep/b.txt", b"hello")
    put(store, bucket, "deep/c.txt", b"1234567")
    put(store, bucket, "a.txt", b"abcdef")  # an overwrite counts once
    store.delete_file(bucket, "deep/b.txt")
    got = store.get_bucket(bucket)
    assert (got.name, got.file_count, got.total_size) == (bucket, 2, 13)


def test_update_bucket_changes_only_the_given_fields(store: Store) -> None:
    created, _ = store.create_bucket("photos", description="holidays")
    time.sleep(0.01)
    public = store.update_bucket("photos", BucketChanges(public=True))
    assert (public.public, public.description, public.created_at) == (True, "holidays", created.created_at)
    assert public.updated_at > created.updated_at
    cleared = store.update_bucket("photos", BucketChanges(description=None))
    assert (cleared.public, cleared.description) == (True, None)
    assert store.get_bucket("photos") == cleared


def test_update_bucket_that_changes_nothing_keeps_updated_at(store: Store) -> None:
    created, _ = store.create_bucket("photos", public=True, description="d")
    for changes in (BucketChanges(public=True), BucketChanges(description="d"), BucketChanges()):
        assert store.update_bucket("photos", changes) == created
    assert store.get_bucket("photos") == created


def test_delete_bucket_removes_the_bucket_and_its_files(store: Store, bucket: str) -> None:
    put(store, bucket, "a/b.txt", b"x")
    put(store, bucket, "c.txt", b"y")
    store.delete_bucket(bucket)
    with pytest.raises(BucketNotFound):
        store.get_bucket(bucket)
    assert bucket not in [b.name for b in store.list_buckets()]
    assert contents(store, bucket) == []
    store.create_bucket(bucket)  # the same name again: a new, empty bucket
    assert paths(store, bucket) == []
    assert store.get_bucket(bucket).file_count == 0


def test_operations_on_a_missing_bucket_raise_bucket_not_found(store: Store) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.check_bucket("missing"),
        lambda: store.get_bucket("missing"),
        lambda: store.update_bucket("missing", BucketChanges(public=True)),
        lambda: store.delete_bucket("missing"),
        lambda: store.begin_upload("missing", "a.txt"),
        lambda: store.open_file("missing", "a.txt"),
        lambda: store.delete_file("missing", "a.txt"),
    ]
    for call in calls:
        with pytest.raises(BucketNotFound):
            call()
    assert store.list_buckets() == []


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_bad_bucket_name_raises_invalid_name(store: Store, name: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.create_bucket(name),
        lambda: store.check_bucket(name),
        lambda: store.get_bucket(name),
        lambda: store.open_file(name, "a.txt"),
        lambda: store.list_files(name),
    ]
    for call in calls:
        with pytest.raises(InvalidName):
            call()
    assert store.list_buckets() == []


def test_commit_returns_the_record_of_the_new_file(store: Store, bucket: str) -> None:
    upload = store.begin_upload(bucket, "docs/a.txt")
    upload.write(b"hello ")
    upload.write(memoryview(b"world"))
    assert upload.sha256() == hashlib.sha256(b"hello world").hexdigest()
    record = upload.commit(content_type="text/x-greeting", name="Greeting ü.txt")
    assert (record.bucket, record.path, record.name) == (bucket, "docs/a.txt", "Greeting ü.txt")
    assert (record.size, record.content_type) == (11, "text/x-greeting")
    assert record.sha256 == hashlib.sha256(b"hello world").hexdigest()
    assert record.md5 is None
    assert record.created_at == record.updated_at
    assert record_of(store, bucket, "docs/a.txt") == record
    assert stored(store, bucket, "docs/a.txt") == b"hello world"
    assert temp_files(store) == []


def test_md5_is_given_only_when_the_upload_asks_for_it(store: Store, bucket: str) -> None:
    with_md5 = put(store, bucket, "a.txt", b"digest me", md5=True)
    assert with_md5.md5 == hashlib.md5(b"digest me").hexdigest()
    assert record_of(store, bucket, "a.txt").md5 == with_md5.md5
    assert put(store, bucket, "b.txt", b"digest me").md5 is None


def test_user_metadata_round_trips_through_open_and_list(store: Store, bucket: str) -> None:
    put(store, bucket, "a.txt", b"x", metadata={"color": "blue"})
    assert record_of(store, bucket, "a.txt").metadata == {"color": "blue"}
    assert [f.metadata for f in store.list_files(bucket).files] == [{"color": "blue"}]


def test_overwrite_keeps_created_at_and_replaces_bytes_and_updated_at(store: Store, bucket: str) -> None:
    first = put(store, bucket, "a.txt", b"one")
    time.sleep(0.01)
    second = put(store, bucket, "a.txt", b"second")
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert (read(store, bucket, "a.txt"), record_of(store, bucket, "a.txt")) == (b"second", second)


def test_abort_leaves_nothing_and_is_safe_twice(store: Store, bucket: str) -> None:
    upload = store.begin_upload(bucket, "a/b.txt")
    upload.write(b"partial")
    upload.abort()
    upload.abort()
    with pytest.raises(FileNotFound):
        store.open_file(bucket, "a/b.txt")
    assert (paths(store, bucket), temp_files(store)) == ([], [])


@pytest.mark.parametrize("recreated", [False, True])
def test_commit_into_a_deleted_bucket_raises_bucket_not_found(
    store: Store, bucket: str, recreated: bool
) -> None:
    upload = store.begin_upload(bucket, "deep/a.txt")
    upload.write(b"too late")
    store.delete_bucket(bucket)
    if recreated:
        store.create_bucket(bucket)  # the same name, another bucket: still not the upload's
    with pytest.raises(BucketNotFound):
        upload.commit(content_type="text/plain", name="a.txt")
    assert contents(store, bucket) == []
    assert temp_files(store) == []


def test_a_zero_byte_file_is_stored_and_read_back(store: Store, bucket: str) -> None:
    record = put(store, bucket, "empty", b"")
    assert (record.size, record.sha256) == (0, hashlib.sha256(b"").hexdigest())
    assert read(store, bucket, "empty") == b""
    assert read(store, bucket, "empty", stream=True) == b""
    assert paths(store, bucket) == ["empty"]


def test_a_body_over_a_mebibyte_with_a_declared_size_round_trips(store: Store, bucket: str) -> None:
    data = os.urandom(MiB + 300_000)
    upload = store.begin_upload(bucket, "big.bin", size=len(data), precondition=create_only)
    try:
        for offset in range(0, len(data), 64 * 1024):
            upload.write(data[offset : offset + 64 * 1024])
        record = upload.commit(content_type="application/octet-stream", name="big.bin")
    finally:
        upload.abort()
    assert (record.size, record.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert read(store, bucket, "big.bin", stream=True, chunk=256 * 1024) == data
    assert temp_files(store) == []


def test_a_precondition_sees_the_current_record_or_none(store: Store, bucket: str) -> None:
    seen: list[FileRecord | None] = []
    put(store, bucket, "a.txt", b"one", precondition=seen.append)
    assert {r.sha256 if r else None for r in seen} == {None}  # at begin_upload, commit or both
    seen.clear()
    first = record_of(store, bucket, "a.txt")
    put(store, bucket, "a.txt", b"two", precondition=seen.append)
    assert {r.sha256 if r else None for r in seen} == {first.sha256}


def test_a_precondition_failing_at_commit_keeps_the_old_version(store: Store, bucket: str) -> None:
    old = put(store, bucket, "a.txt", b"old")
    upload = store.begin_upload(bucket, "a.txt")
    upload.write(b"new")
    with pytest.raises(PreconditionFailed):
        upload.commit(content_type="text/plain", name="a.txt", precondition=refuse)
    assert (read(store, bucket, "a.txt"), record_of(store, bucket, "a.txt")) == (b"old", old)
    assert temp_files(store) == []


def test_of_two_create_only_uploads_begun_together_exactly_one_commits(store: Store, bucket: str) -> None:
    uploads = [store.begin_upload(bucket, "once.txt", precondition=create_only) for _ in range(2)]
    for n, upload in enumerate(uploads):
        upload.write(f"upload {n}".encode())
    barrier = threading.Barrier(2)

    def commit(n: int) -> bool:
        barrier.wait()
        try:
            uploads[n].commit(content_type="text/plain", name="once.txt", precondition=create_only)
        except PreconditionFailed:
            return False
        return True

    with ThreadPoolExecutor(2) as pool:
        won = list(pool.map(commit, range(2)))
    assert won.count(True) == 1
    assert read(store, bucket, "once.txt") == f"upload {won.index(True)}".encode()
    assert temp_files(store) == []


def test_delete_file_with_a_failing_precondition_keeps_the_file(store: Store, bucket: str) -> None:
    put(store, bucket, "a.txt", b"kept")
    with pytest.raises(PreconditionFailed):
        store.delete_file(bucket, "a.txt", precondition=refuse)
    assert read(store, bucket, "a.txt") == b"kept"
    seen: list[FileRecord | None] = []
    assert store.delete_file(bucket, "a.txt", precondition=seen.append) is True
    assert [r.sha256 if r else None for r in seen] == [hashlib.sha256(b"kept").hexdigest()]


def test_open_file_reads_the_bytes_in_chunks(store: Store, bucket: str) -> None:
    data = os.urandom(10_000)
    put(store, bucket, "a.bin", data)
    assert read(store, bucket, "a.bin", chunk=999) == data
    assert read(store, bucket, "a.bin", stream=True, chunk=4096) == data


def test_seek_reads_exactly_the_span_then_nothing(store: Store, bucket: str) -> None:
    data = bytes(range(256)) * 16
    put(store, bucket, "a.bin", data)
    reader = store.open_file(bucket, "a.bin")
    try:
        reader.seek(100, 50)
        assert reader.read(30) + reader.read(1000) == data[100:150]
        assert reader.read(10) == b""
    finally:
        reader.close()


@pytest.mark.parametrize("read_first", [0, 1024])
def test_a_reader_opened_before_an_overwrite_never_mixes_versions(
    store: Store, bucket: str, read_first: int
) -> None:
    old, new = b"o" * 4096, b"n" * 4096
    put(store, bucket, "a.bin", old)
    reader = store.open_file(bucket, "a.bin")
    try:
        got = reader.read(read_first) if read_first else b""
        put(store, bucket, "a.bin", new)
        try:
            got += b"".join(iter(lambda: reader.read(1000), b""))
        except FileChanged:
            return
    finally:
        reader.close()
    assert got == old


def test_open_file_on_a_missing_key_raises_file_not_found(store: Store, bucket: str) -> None:
    put(store, bucket, "dir/a.txt", b"x")
    for key in ("missing.txt", "dir", "dir/a.txt/b", "dir/b.txt"):
        with pytest.raises(FileNotFound):
            store.open_file(bucket, key)


@pytest.mark.parametrize("key", BAD_KEYS)
def test_a_bad_key_raises_invalid_key(store: Store, bucket: str, key: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: store.open_file(bucket, key),
        lambda: store.begin_upload(bucket, key),
        lambda: store.delete_file(bucket, key),
        lambda: store.copy_file(bucket, key, bucket, "b.txt"),
    ]
    for call in calls:
        with pytest.raises(InvalidKey):
            call()
    assert temp_files(store) == []


@pytest.mark.parametrize(("first", "second"), [("a", "a/b"), ("a/b", "a")])
def test_a_file_and_a_folder_cannot_share_a_key(store: Store, bucket: str, first: str, second: str) -> None:
    put(store, bucket, first, b"first")
    with pytest.raises(Conflict):  # at begin_upload or at commit
        put(store, bucket, second, b"second")
    assert (read(store, bucket, first), temp_files(store)) == (b"first", [])


def test_delete_file_returns_true_then_false_and_leaves_folders_alone(store: Store, bucket: str) -> None:
    put(store, bucket, "dir/a.txt", b"x")
    assert store.delete_file(bucket, "dir") is False
    assert read(store, bucket, "dir/a.txt") == b"x"
    assert store.delete_file(bucket, "dir/a.txt") is True
    assert store.delete_file(bucket, "dir/a.txt") is False
    with pytest.raises(FileNotFound):
        store.open_file(bucket, "dir/a.txt")


def test_deleting_the_last_file_of_a_folder_drops_the_folder_from_the_listing(
    store: Store, bucket: str
) -> None:
    put(store, bucket, "dir/sub/a.txt", b"x")
    put(store, bucket, "top.txt", b"y")
    store.delete_file(bucket, "dir/sub/a.txt")
    page = store.list_files(bucket, delimited=True)
    assert ([f.path for f in page.files], page.folders) == (["top.txt"], [])
    assert store.list_files(bucket, prefix="dir/", delimited=True).folders == []


@pytest.mark.parametrize("dst", [("photos", "copies/a.txt"), ("archive", "a.txt")])
def test_copy_file_copies_bytes_and_metadata_and_keeps_the_source(
    store: Store, bucket: str, dst: tuple[str, str]
) -> None:
    store.create_bucket("archive")
    source = put(store, bucket, "a.txt", b"alpha", metadata={"color": "blue"})
    copy = store.copy_file(bucket, "a.txt", *dst)
    assert (copy.bucket, copy.path) == dst
    fields = {"size", "content_type", "name", "sha256", "metadata"}
    assert copy.model_dump(include=fields) == source.model_dump(include=fields)
    assert record_of(store, *dst) == copy
    assert read(store, *dst) == b"alpha"
    assert (read(store, bucket, "a.txt"), record_of(store, bucket, "a.txt")) == (b"alpha", source)


def test_copy_file_of_a_missing_source_raises_file_not_found(store: Store, bucket: str) -> None:
    with pytest.raises(FileNotFound):
        store.copy_file(bucket, "missing.txt", bucket, "b.txt")
    assert paths(store, bucket) == []


def test_copy_file_refused_by_its_precondition_keeps_the_destination(store: Store, bucket: str) -> None:
    put(store, bucket, "a.txt", b"source")
    kept = put(store, bucket, "b.txt", b"destination")
    with pytest.raises(PreconditionFailed):
        store.copy_file(bucket, "a.txt", bucket, "b.txt", precondition=create_only)
    assert (read(store, bucket, "b.txt"), record_of(store, bucket, "b.txt")) == (b"destination", kept)
    assert temp_files(store) == []


def test_move_file_keeps_bytes_and_dates_and_removes_the_source(store: Store, bucket: str) -> None:
    store.create_bucket("archive")
    source = put(store, bucket, "dir/a.txt", b"alpha", metadata={"color": "blue"})
    time.sleep(0.01)
    moved = store.move_file(bucket, "dir/a.txt", "archive", "x/y.txt")
    assert (moved.bucket, moved.path) == ("archive", "x/y.txt")
    assert moved.model_dump(exclude={"bucket", "path"}) == source.model_dump(exclude={"bucket", "path"})
    assert (read(store, "archive", "x/y.txt"), record_of(store, "archive", "x/y.txt")) == (b"alpha", moved)
    with pytest.raises(FileNotFound):
        store.open_file(bucket, "dir/a.txt")


def test_move_file_onto_itself_returns_the_record_unchanged(store: Store, bucket: str) -> None:
    source = put(store, bucket, "dir/a.txt", b"alpha")
    assert store.move_file(bucket, "dir/a.txt", bucket, "dir/a.txt") == source
    assert (read(store, bucket, "dir/a.txt"), record_of(store, bucket, "dir/a.txt")) == (b"alpha", source)


ORDER_KEYS = ["é", "a0", "B", "a/b", "a-c", "z/é/1", "z/e/2"]


def test_list_files_is_in_utf8_byte_order(store: Store, bucket: str) -> None:
    for key in ORDER_KEYS:
        put(store, bucket, key, key.encode())
    page = store.list_files(bucket)
    assert [f.path for f in page.files] == utf8_order(ORDER_KEYS)
    assert (page.folders, page.next_after) == ([], None)
    assert [f.size for f in page.files] == [len(k.encode()) for k in utf8_order(ORDER_KEYS)]


def test_list_files_filters_by_a_prefix_ending_in_a_partial_segment(store: Store, bucket: str) -> None:
    for key in ("photos/2024/x", "photos/2023.txt", "photos/1999/y", "photos2024", "other/2024"):
        put(store, bucket, key, b"x")
    assert paths(store, bucket, "photos/20") == ["photos/2023.txt", "photos/2024/x"]
    assert paths(store, bucket, "photos/") == ["photos/1999/y", "photos/2023.txt", "photos/2024/x"]


def test_delimited_listing_gives_each_folder_once(store: Store, bucket: str) -> None:
    for key in ("top.txt", "photos/2024/a", "photos/2024/b", "photos/x.txt", "photos/1999/c", "zz/d"):
        put(store, bucket, key, b"x")
    root = store.list_files(bucket, delimited=True)
    assert ([f.path for f in root.files], root.folders) == (["top.txt"], ["photos/", "zz/"])
    inner = store.list_files(bucket, prefix="photos/", delimited=True)
    assert [f.path for f in inner.files] == ["photos/x.txt"]
    assert inner.folders == ["photos/1999/", "photos/2024/"]


@pytest.mark.parametrize("delimited", [False, True])
def test_pagination_walks_every_key_exactly_once(store: Store, bucket: str, delimited: bool) -> None:
    for key in ORDER_KEYS:
        put(store, bucket, key, b"x")
    whole = store.list_files(bucket, delimited=delimited)
    expected = [f.path for f in whole.files] + whole.folders
    walked: list[str] = []
    after: bytes | None = None
    for _ in range(len(ORDER_KEYS) + 1):
        page = store.list_files(bucket, delimited=delimited, limit=2, after=after)
        assert len(page.files) + len(page.folders) <= 2
        walked += [f.path for f in page.files] + page.folders
        if page.next_after is None:
            break
        after = page.next_after.encode("utf-8")
    assert page.next_after is None
    assert utf8_order(walked) == utf8_order(expected)
    assert len(walked) == len(set(walked))


def test_a_prefix_no_key_can_have_lists_nothing(store: Store, bucket: str) -> None:
    put(store, bucket, "x/a.txt", b"x")
    for prefix in ("../", "x//", "./x"):
        page = store.list_files(bucket, prefix=prefix, delimited=True)
        assert (page.files, page.folders, page.next_after) == ([], [], None)


def test_a_fresh_store_is_writable_and_its_sweep_returns_a_count(store: Store) -> None:
    assert store.is_writable() is True
    assert isinstance(store.sweep(), int)


def test_a_live_upload_survives_a_sweep_with_no_grace(store: Store, bucket: str) -> None:
    upload = store.begin_upload(bucket, "a.txt")
    upload.write(b"in ")
    store.sweep(grace=0)
    upload.write(b"progress")
    upload.commit(content_type="text/plain", name="a.txt")
    assert read(store, bucket, "a.txt") == b"in progress"
    assert temp_files(store) == []


FOUND = "f" * 64  # a sha256 the bytes could have hashed to


def test_mark_damaged_marks_that_version_and_lists_it(store: Store, bucket: str) -> None:
    record = put(store, bucket, "dir/a.txt", b"alpha")
    other = put(store, bucket, "b.txt", b"beta")
    assert store.mark_damaged(record, found_sha256=FOUND, found_size=5) is True
    assert record_of(store, bucket, "dir/a.txt").damaged == FOUND
    assert read(store, bucket, "dir/a.txt") == b"alpha"  # it still opens: the caller decides
    assert record_of(store, bucket, "b.txt") == other
    [damage] = store.list_damaged()
    assert (damage.bucket, damage.path, damage.found_size) == (bucket, "dir/a.txt", 5)
    assert (damage.expected_sha256, damage.found_sha256) == (record.sha256, FOUND)
    assert [f.damaged for f in store.list_files(bucket).files] == [None, FOUND]


def test_marking_a_version_already_replaced_marks_nothing(store: Store, bucket: str) -> None:
    old = put(store, bucket, "a.txt", b"old")
    time.sleep(0.01)
    put(store, bucket, "a.txt", b"old")  # the same bytes, another version
    assert store.mark_damaged(old, found_sha256=FOUND, found_size=3) is False
    assert store.delete_file(bucket, "a.txt") is True
    assert store.mark_damaged(old, found_sha256=FOUND, found_size=3) is False
    assert store.list_damaged() == []


def test_marking_twice_keeps_the_first_entry(store: Store, bucket: str) -> None:
    record = put(store, bucket, "a.txt", b"alpha")
    assert store.mark_damaged(record, found_sha256=FOUND, found_size=5) is True
    [first] = store.list_damaged()
    assert store.mark_damaged(record, found_sha256=FOUND, found_size=5) is True
    assert store.list_damaged() == [first]


@pytest.mark.parametrize("clear", ["reupload", "delete", "delete_bucket"])
def test_a_reupload_or_delete_clears_the_mark_and_the_listing(store: Store, bucket: str, clear: str) -> None:
    record = put(store, bucket, "a.txt", b"alpha")
    store.mark_damaged(record, found_sha256=FOUND, found_size=5)
    if clear == "reupload":
        fresh = put(store, bucket, "a.txt", b"alpha")
        assert record_of(store, bucket, "a.txt") == fresh
        assert fresh.damaged is None
    elif clear == "delete":
        store.delete_file(bucket, "a.txt")
    else:
        store.delete_bucket(bucket)
    assert store.list_damaged() == []


def test_list_damaged_of_one_bucket(store: Store, bucket: str) -> None:
    store.create_bucket("archive")
    for name in (bucket, "archive"):
        for key in ("z.txt", "a.txt"):
            store.mark_damaged(put(store, name, key, b"x"), found_sha256=FOUND, found_size=1)
    assert [(d.bucket, d.path) for d in store.list_damaged()] == [
        ("archive", "a.txt"),
        ("archive", "z.txt"),
        (bucket, "a.txt"),
        (bucket, "z.txt"),
    ]
    assert [d.path for d in store.list_damaged("archive")] == ["a.txt", "z.txt"]
    with pytest.raises(BucketNotFound):
        store.list_damaged("missing")
    with pytest.raises(InvalidName):
        store.list_damaged("A")


def test_a_damaged_source_is_neither_copied_nor_moved(store: Store, bucket: str) -> None:
    record = put(store, bucket, "a.txt", b"alpha")
    store.mark_damaged(record, found_sha256=FOUND, found_size=5)
    with pytest.raises(Damaged):
        store.copy_file(bucket, "a.txt", bucket, "b.txt")
    with pytest.raises(Damaged):
        store.move_file(bucket, "a.txt", bucket, "b.txt")
    assert paths(store, bucket) == ["a.txt"]
    assert temp_files(store) == []


def test_one_scrub_lock_holder_at_a_time(store: Store) -> None:
    lock = store.lock_scrub()
    assert lock is not None
    assert store.lock_scrub() is None
    assert lock.keep() is True
    lock.release()
    lock.release()
    again = store.lock_scrub()
    assert again is not None
    again.release()


def test_scrub_state_round_trips_and_starts_empty(store: Store, bucket: str) -> None:
    assert store.load_scrub_state() == ScrubState()
    state = ScrubState(
        started_at=now(),
        bucket=bucket,
        after="dir/é.txt",
        files=3,
        bytes=12,
        damaged=1,
    )
    store.save_scrub_state(state)
    assert store.load_scrub_state() == state
    store.save_scrub_state(ScrubState())
    assert store.load_scrub_state() == ScrubState()
