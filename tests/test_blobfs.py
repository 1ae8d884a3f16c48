"""The store on its own, without HTTP: validation, atomic commits, races, sweeping, symlinks."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from storage_server import blobfs
from storage_server.blobfs import BlobStore
from storage_server.fs import ops as fsops
from storage_server.store import BucketChanges, errors, keys

# Keys and bucket names that must be rejected; grow these whenever a bug is found.
HOSTILE_KEYS = [
    "",
    "/",
    "/etc/passwd",
    "a//b",
    "a/",
    ".",
    "..",
    "../x",
    "a/../../x",
    "a/./b",
    "a\\..\\b",
    "..\\x",
    "a\x00b",
    "a\nb",
    "a\rb",
    "tab\there",
    "del\x7f",
    "c1\x85",
    " ",
    "a/ /b",
    "x" * 256,
    "a/" + "é" * 128,  # 256 bytes in one segment
    "/".join(["abcdefghi"] * 103),  # 1029 bytes
    "\udcff",  # a lone surrogate cannot be UTF-8
    "./x",
    "x/.",
    "x/..",
    "../../etc/passwd",
    "//x",
    "x//",
    "x/",
    "\\x",
    "C:\\x",
    "..\\..\\x",
    "a\\b",
    "\x01",
    "x\x1f",
    "\x9b",
    "a/\t/b",
    "\u3000",  # an ideographic space: a blank segment
    "\u00a0/x",  # a no-break space: a blank segment
    "x/\u2028",
    "///",
    "/".join(["k" * 200] * 5) + "k" * 21,  # 1025 bytes
    "a/" + "x" * 255 + "y",  # a 256-byte segment deeper down
    "x\ud800y",
]
HOSTILE_BUCKETS = [
    "",
    "ab",
    "a" * 64,
    "ABC",
    "abc\n",
    "-abc",
    "abc-",
    "ab_c",
    "ab.c",
    ".storage-server",
    "..",
    "a/b",
    "é" * 3,
    "abc ",
    " abc",
    "UPPER",
    "a b c",
    "abc/",
    "/abc",
    "ab\x00c",
    "127.0.0.1",
    "--",
    "a" * 2,
    "abc\t",
    "\uff41\uff42\uff43",  # full-width look-alikes of "abc"
]


def upload(store: BlobStore, bucket: str, key: str, data: bytes, content_type: str = "text/plain") -> None:
    up = store.begin_upload(bucket, key)
    up.write(data)
    up.commit(content_type=content_type, name=key.rsplit("/", 1)[-1])


def read(store: BlobStore, bucket: str, key: str) -> bytes:
    reader = store.open_file(bucket, key)
    try:
        return reader.read(1 << 30)
    finally:
        reader.close()


def temp_entries(store: BlobStore) -> list[str]:
    return os.listdir(store.root / blobfs.INTERNAL_DIR / "tmp")


@pytest.fixture
def bucket(store: BlobStore) -> str:
    store.create_bucket("photos", public=False, description=None)
    return "photos"


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_keys_are_rejected(key: str) -> None:
    with pytest.raises(errors.InvalidKey):
        keys.validate_key(key)


@pytest.mark.parametrize("name", HOSTILE_BUCKETS)
def test_hostile_bucket_names_are_rejected(name: str) -> None:
    with pytest.raises(errors.InvalidName):
        keys.validate_bucket_name(name)


# Look-alikes of "/" and ".." (U+2215, U+FF0E) are plain names on Linux: they must round-trip.
PLAIN_KEYS = ["a", "data/2024/01/report.csv", "ünïcødé/文件.txt", "x" * 255, "a b/c d", ".hidden", "a..b"]
PLAIN_KEYS += ["\u2026", "a\u2215b", "\uff0e\uff0e", "/".join(["k" * 200] * 5)]


@pytest.mark.parametrize("key", PLAIN_KEYS)
def test_plain_keys_round_trip(store: BlobStore, bucket: str, key: str) -> None:
    upload(store, bucket, key, b"payload")
    assert read(store, bucket, key) == b"payload"
    assert (store.root / bucket / key).read_bytes() == b"payload"


def test_commit_places_bytes_and_metadata_in_one_file(store: BlobStore, bucket: str) -> None:
    up = store.begin_upload(bucket, "docs/a.txt")
    up.write(b"hello ")
    up.write(memoryview(b"world"))
    record = up.commit(content_type="text/plain", name="original name.txt")
    path = store.root / bucket / "docs" / "a.txt"
    assert path.read_bytes() == b"hello world"
    meta = json.loads(os.getxattr(path, fsops.FILE_XATTR))
    assert meta["sha256"] == hashlib.sha256(b"hello world").hexdigest() == record.sha256
    assert meta["name"] == "original name.txt"
    assert record.size == 11
    assert temp_entries(store) == []


def test_abort_leaves_nothing(store: BlobStore, bucket: str) -> None:
    up = store.begin_upload(bucket, "a.txt")
    up.write(b"partial")
    assert len(temp_entries(store)) == 1
    up.abort()
    up.abort()
    assert temp_entries(store) == []
    assert not (store.root / bucket / "a.txt").exists()
    with pytest.raises(errors.StorageError):
        up.write(b"more")


def test_overwrite_keeps_created_at(store: BlobStore, bucket: str) -> None:
    upload(store, bucket, "a.txt", b"one")
    first = store.open_file(bucket, "a.txt")
    first.close()
    time.sleep(0.01)
    upload(store, bucket, "a.txt", b"two")
    second = store.open_file(bucket, "a.txt")
    second.close()
    assert second.record.created_at == first.record.created_at
    assert second.record.updated_at > first.record.updated_at
    assert read(store, bucket, "a.txt") == b"two"


def test_reader_keeps_the_version_it_opened(store: BlobStore, bucket: str) -> None:
    upload(store, bucket, "a.txt", b"old version")
    reader = store.open_file(bucket, "a.txt")
    upload(store, bucket, "a.txt", b"new")
    assert reader.read(100) == b"old version"
    reader.close()


def test_create_bucket_twice_returns_the_existing_one_untouched(store: BlobStore) -> None:
    first, created = store.create_bucket("photos", public=True, description="mine")
    upload(store, "photos", "keep.txt", b"x")
    again, created_again = store.create_bucket("photos", public=False, description=None)
    assert (created, created_again) == (True, False)
    assert again.model_dump(exclude={"file_count", "total_size"}) == first.model_dump(
        exclude={"file_count", "total_size"}
    )
    assert (again.file_count, again.total_size) == (1, 1)
    assert read(store, "photos", "keep.txt") == b"x"


def test_update_bucket_persists_and_keeps_created_at(store: BlobStore, bucket: str) -> None:
    before = store.get_bucket(bucket)
    after = store.update_bucket(bucket, BucketChanges(public=True, description="d"))
    assert store.get_bucket(bucket) == after
    assert (after.public, after.description) == (True, "d")
    assert after.created_at == before.created_at
    assert after.updated_at > before.updated_at


def test_delete_file_prunes_empty_folders_only(store: BlobStore, bucket: str) -> None:
    upload(store, bucket, "a/b/c/one.txt", b"1")
    upload(store, bucket, "a/two.txt", b"2")
    store.delete_file(bucket, "a/b/c/one.txt")
    assert not (store.root / bucket / "a" / "b").exists()
    assert (store.root / bucket / "a" / "two.txt").exists()
    store.delete_file(bucket, "a/two.txt")
    assert os.listdir(store.root / bucket) == []
    store.delete_file(bucket, "a/two.txt")  # already gone: fine


def test_conflicts_between_files_and_folders(store: BlobStore, bucket: str) -> None:
    upload(store, bucket, "a/b", b"file")
    with pytest.raises(errors.Conflict):
        store.begin_upload(bucket, "a/b/c")
    with pytest.raises(errors.Conflict):
        store.begin_upload(bucket, "a")
    assert read(store, bucket, "a/b") == b"file"


def test_conflict_found_at_commit_leaves_both_intact(store: BlobStore, bucket: str) -> None:
    up = store.begin_upload(bucket, "x/y")
    up.write(b"late")
    upload(store, bucket, "x", b"a file took the folder's place")
    with pytest.raises(errors.Conflict):
        up.commit(content_type="text/plain", name="y")
    assert read(store, bucket, "x") == b"a file took the folder's place"
    assert temp_entries(store) == []


def test_delete_bucket_removes_everything(store: BlobStore, bucket: str) -> None:
    upload(store, bucket, "a/b.txt", b"x")
    store.delete_bucket(bucket)
    assert not (store.root / bucket).exists()
    assert os.listdir(store.root / blobfs.INTERNAL_DIR / "trash") == []
    with pytest.raises(errors.BucketNotFound):
        store.get_bucket(bucket)
    with pytest.raises(errors.BucketNotFound):
        store.delete_bucket(bucket)


def test_upload_into_bucket_deleted_meanwhile_is_not_found_and_does_not_recreate_it(
    store: BlobStore, bucket: str
) -> None:
    up = store.begin_upload(bucket, "deep/folder/a.txt")
    up.write(b"x")
    store.delete_bucket(bucket)
    with pytest.raises(errors.BucketNotFound):
        up.commit(content_type="text/plain", name="a.txt")
    assert not (store.root / bucket).exists()
    assert temp_entries(store) == []


def test_upload_into_bucket_recreated_meanwhile_is_not_found(store: BlobStore, bucket: str) -> None:
    up = store.begin_upload(bucket, "a.txt")
    store.delete_bucket(bucket)
    store.create_bucket(bucket, public=False, description=None)
    with pytest.raises(errors.BucketNotFound):
        up.commit(content_type="text/plain", name="a.txt")
    assert os.listdir(store.root / bucket) == []


def test_concurrent_uploads_of_one_key_leave_one_complete_version(store: BlobStore, bucket: str) -> None:
    versions = [bytes([i]) * (256 * 1024 + i) for i in range(8)]

    def put(data: bytes) -> None:
        up = store.begin_upload(bucket, "same/key.bin")
        for offset in range(0, len(data), 8192):
            up.write(data[offset : offset + 8192])
        up.commit(content_type="application/octet-stream", name="key.bin")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, versions))
    stored = read(store, bucket, "same/key.bin")
    assert stored in versions
    reader = store.open_file(bucket, "same/key.bin")
    reader.close()
    assert reader.record.sha256 == hashlib.sha256(stored).hexdigest()
    assert temp_entries(store) == []


def test_uploads_racing_deletes_in_one_folder_all_succeed(store: BlobStore, bucket: str) -> None:
    # Each delete prunes the shared folder when it empties; uploads must recreate it and succeed.
    errors: list[BaseException] = []

    def churn(worker: int) -> None:
        try:
            for i in range(150):
                key = f"shared/sub/w{worker}-{i}"
                upload(store, bucket, key, b"x")
                store.delete_file(bucket, key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert not (store.root / bucket / "shared").exists()


def test_sweep_removes_dead_temp_files_but_not_live_or_new_ones(store: BlobStore, bucket: str) -> None:
    tmp = store.root / blobfs.INTERNAL_DIR / "tmp"
    dead = tmp / "dead.part"
    dead.write_bytes(b"left by a crash")
    old = time.time() - 3600
    os.utime(dead, (old, old))
    young = tmp / "young.part"
    young.write_bytes(b"just created, not locked yet")
    live = store.begin_upload(bucket, "a.txt")
    live.write(b"in progress")
    live_name = next(n for n in os.listdir(tmp) if n not in ("dead.part", "young.part"))
    os.utime(tmp / live_name, (old, old))

    assert store.sweep() == 1
    assert sorted(os.listdir(tmp)) == sorted([live_name, "young.part"])
    live.commit(content_type="text/plain", name="a.txt")
    assert read(store, bucket, "a.txt") == b"in progress"
    assert store.sweep(grace=0) == 1  # with no worker running everything unlocked goes
    assert os.listdir(tmp) == []


def test_sweep_skips_a_locked_trash_entry(store: BlobStore) -> None:
    trashed = store.root / blobfs.INTERNAL_DIR / "trash" / "photos.deleting"
    trashed.mkdir()
    fd = os.open(trashed, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        assert store.sweep(grace=0) == 0
    finally:
        os.close(fd)
    assert store.sweep(grace=0) == 1
    assert not trashed.exists()


def test_symlinks_inside_the_storage_path_are_never_followed(
    tmp_path: Path, store: BlobStore, bucket: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    canary = outside / "canary.txt"
    canary.write_bytes(b"canary")
    bucket_dir = store.root / bucket
    (bucket_dir / "link-dir").symlink_to(outside)
    (bucket_dir / "link-file").symlink_to(canary)
    (bucket_dir / "etc").symlink_to("/etc")
    (store.root / "linked-bucket").symlink_to(bucket_dir)

    for key in ("link-dir/canary.txt", "link-file", "etc/passwd"):
        with pytest.raises(errors.FileNotFound):
            store.open_file(bucket, key)
    with pytest.raises(errors.Conflict):
        store.begin_upload(bucket, "link-dir/new.txt")
    store.delete_file(bucket, "link-dir/canary.txt")
    store.delete_file(bucket, "etc/passwd")
    with pytest.raises(errors.BucketNotFound):
        store.open_file("linked-bucket", "anything")
    assert "linked-bucket" not in [b.name for b in store.list_buckets()]
    assert canary.read_bytes() == b"canary"
    assert os.listdir(outside) == ["canary.txt"]


def test_a_file_placed_by_hand_is_served_with_computed_metadata(store: BlobStore, bucket: str) -> None:
    (store.root / bucket / "manual.json").write_bytes(b"{}")
    reader = store.open_file(bucket, "manual.json")
    reader.close()
    assert reader.record.sha256 == hashlib.sha256(b"{}").hexdigest()
    assert reader.record.content_type == "application/json"


def test_prepare_rejects_a_storage_path_that_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "not-a-folder"
    target.write_text("x")
    with pytest.raises(errors.Unavailable, match="storage path"):
        BlobStore(target).prepare()


def test_health_probe_fails_when_the_storage_path_is_gone(store: BlobStore) -> None:
    assert store.is_writable()
    os.rename(store.root, str(store.root) + ".moved")
    assert not store.is_writable()
