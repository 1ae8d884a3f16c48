"""What a store holds underneath the API, read directly (files on disk, or objects in the
engine), so that tests on both backends can check what was really stored or left behind."""

from __future__ import annotations

import os

from storage_server import blobfs
from storage_server.s3.store import S3Store
from storage_server.store import Store
from storage_server.store.errors import BucketNotFound


def temp_files(store: Store) -> list[str]:
    """Leftovers of uploads: temp or spool files, multipart uploads and staged objects."""
    if isinstance(store, blobfs.BlobStore):
        return os.listdir(store.root / blobfs.INTERNAL_DIR / "tmp")
    found = os.listdir(store.spool.folder)
    uploads = store.client.list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix)
    found += [u["Key"] for u in uploads.get("Uploads", ())]
    found += [i["Key"] for page in store.pages(f"{store.prefix}staging/") for i in page.get("Contents", ())]
    return found


def stored(store: Store, bucket: str, key: str) -> bytes | None:
    """The bytes stored for a key, or None."""
    if isinstance(store, blobfs.BlobStore):
        path = store.root / bucket / key
        return path.read_bytes() if path.is_file() else None
    assert isinstance(store, S3Store)
    try:
        target = store.files_key(store.bucket_id(bucket), key)
    except BucketNotFound:
        return None
    if store.head(target, bucket, key).record is None:
        return None
    return bytes(store.client.get_object(Bucket=store.bucket, Key=target)["Body"].read())


def contents(store: Store, bucket: str) -> list[str]:
    """Everything stored for a bucket (files and folders, or objects), sorted; [] if none."""
    if isinstance(store, blobfs.BlobStore):
        top = store.root / bucket
        return sorted(str(p.relative_to(top)) for p in top.rglob("*")) if top.exists() else []
    assert isinstance(store, S3Store)
    try:
        prefix = store.files_key(store.bucket_id(bucket), "")
    except BucketNotFound:
        return []
    return sorted(i["Key"][len(prefix) :] for page in store.pages(prefix) for i in page.get("Contents", ()))


def all_objects(store: Store) -> list[str]:
    """Every file (fs) or object (s3) the store holds for its buckets."""
    if isinstance(store, blobfs.BlobStore):
        return sorted(
            str(p.relative_to(store.root))
            for p in store.root.rglob("*")
            if p.is_file() and blobfs.INTERNAL_DIR not in p.parts
        )
    assert isinstance(store, S3Store)
    return sorted(i["Key"] for page in store.pages(f"{store.prefix}files/") for i in page.get("Contents", ()))


def secrets(store: Store) -> tuple[str, ...]:
    """Strings about the store's setup that no answer may reveal."""
    if isinstance(store, blobfs.BlobStore):
        return (str(store.root),)
    assert isinstance(store, S3Store)
    return (store.client.meta.endpoint_url, store.prefix)


def walked(store: Store, bucket: str) -> tuple[int, int]:
    """(files, bytes) of a bucket, counted from what is stored, not from the store's counters."""
    if isinstance(store, blobfs.BlobStore):
        files = [p for p in (store.root / bucket).rglob("*") if p.is_file() and not p.is_symlink()]
        return len(files), sum(p.stat().st_size for p in files)
    assert isinstance(store, S3Store)
    prefix = store.files_key(store.bucket_id(bucket), "")
    sizes = [i["Size"] for page in store.pages(prefix) for i in page.get("Contents", ())]
    return len(sizes), sum(sizes)
