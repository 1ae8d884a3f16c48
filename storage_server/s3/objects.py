"""The S3 store's view of its engine bucket: where things live under the prefix, what a key
holds now, the bucket records, and listing or deleting many objects. S3Store builds on it; its
uploads and readers use it.

Layout under `s3_prefix` in `s3_bucket`:
- `buckets/<name>`: a bucket's record (JSON: its id, public, description, dates);
- `files/<id>/<key>`: a file, its record in the object's metadata (see client.file_meta);
- `staging/<uuid>`: a multipart upload being assembled, copied to `files/` with its metadata;
- `sweep.lease`: who sweeps leftovers, until when (see sweep.py);
- `damaged/<hash>`: an entry of the index of damaged files; `scrub.lease`: who scrubs, until
  when; `scrub.json`: the scrub's position and last pass (see integrity.py).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from ..store.errors import BucketNotFound, Conflict, PreconditionFailed, Unavailable
from ..store.keys import is_bucket_name, validate_bucket_name
from ..store.limits import Limits
from ..store.records import FileRecord
from ..store.walk import sort_children
from . import client as s3client
from .client import Missing, engine_errors
from .spool import Spool

ID_TTL = 1.0  # seconds a bucket's id is reused for reads (see Objects._read_id)
LOOKUPS = ThreadPoolExecutor(16, thread_name_prefix="s3-lookup")  # a listing's HEADs, the buckets' counts


class BucketDoc(BaseModel):
    """What `buckets/<name>` holds."""

    id: str
    public: bool
    description: str | None
    file_size_limit: int | None = None
    allowed_mime_types: list[str] | None = None
    created_at: datetime
    updated_at: datetime

    def limits(self) -> Limits:
        types = self.allowed_mime_types
        return Limits(self.file_size_limit, tuple(types) if types is not None else None)


class Current:
    """What a key holds now: its record and the engine's ETag (None, None when nothing)."""

    def __init__(self, record: FileRecord | None = None, etag: str | None = None) -> None:
        self.record = record
        self.etag = etag

    def write_condition(self) -> dict[str, str]:
        """PUT arguments that make the engine refuse the write if the key changed since."""
        return {"IfMatch": self.etag} if self.etag else {"IfNoneMatch": "*"}


class Objects:
    """The engine bucket `bucket` of `client`, under `prefix`; local spool files in `spool`."""

    def __init__(self, client: Any, bucket: str, prefix: str, *, spool: Spool) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.spool = spool
        self._ids: dict[str, tuple[str, float]] = {}  # bucket name: (id, when read), for reads

    def head(self, target: str, bucket: str, key: str) -> Current:
        """What the object `target` (the file `key` of `bucket`) is now."""
        try:
            with engine_errors():
                answer = self.client.head_object(Bucket=self.bucket, Key=target)
        except Missing:
            return Current()
        return Current(s3client.file_record(bucket, key, answer), answer["ETag"])

    def check_way(self, bucket_id: str, parts: tuple[str, ...]) -> Current:
        """The key's current state; raise Conflict when a file or folder blocks it, as on a
        filesystem (checked, not enforced: two nodes racing can still create both)."""
        base, key = self.files_prefix(bucket_id), "/".join(parts)
        # All at once: one round trip of latency, however deep the key.
        folder = LOOKUPS.submit(self.any_under, f"{base}{key}/")
        parents = [
            LOOKUPS.submit(self.head, base + "/".join(parts[:depth]), "", "")
            for depth in range(1, len(parts))
        ]
        current = self.head(base + key, "", key)
        if current.record is None and folder.result():
            raise Conflict("a folder stands where the key needs a file")
        if any(parent.result().record is not None for parent in parents):
            raise Conflict("a file stands where the key needs a folder")
        return current

    def confirm(self, bucket: str, bucket_id: str, target: str) -> None:
        """After a write: raise BucketNotFound (and remove the write) if the bucket was deleted
        meanwhile, so that a delete never leaves a file behind."""
        try:
            alive = self.load(bucket)[0].id == bucket_id
        except BucketNotFound:
            alive = False
        if not alive:
            with contextlib.suppress(Exception):
                self.client.delete_object(Bucket=self.bucket, Key=target)
            raise BucketNotFound(bucket)

    def bucket_id(self, name: str) -> str:
        """The id the bucket's files are stored under; raise BucketNotFound."""
        return self.load(name)[0].id

    def files_key(self, bucket_id: str, key: str) -> str:
        return self.files_prefix(bucket_id) + key

    def staging_key(self) -> str:
        return f"{self.prefix}staging/{uuid.uuid4().hex}"

    def pages(self, prefix: str, delimiter: str = "") -> Iterator[dict[str, Any]]:
        """ListObjectsV2 pages of the keys under `prefix`."""
        paginator = self.client.get_paginator("list_objects_v2")
        with engine_errors():
            yield from paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter=delimiter)

    def record_key(self, name: str) -> str:
        return f"{self.prefix}buckets/{validate_bucket_name(name)}"

    def files_prefix(self, bucket_id: str) -> str:
        return f"{self.prefix}files/{bucket_id}/"

    def bucket_names(self) -> list[str]:
        start = f"{self.prefix}buckets/"
        names = (item["Key"][len(start) :] for page in self.pages(start) for item in page.get("Contents", ()))
        return [name for name in names if is_bucket_name(name)]  # anything else there is not ours

    def read_id(self, name: str) -> str:
        """The bucket's id for a read, looked up at most once a second per worker: a read costs
        one request to the engine, not two. A bucket deleted (or deleted and recreated) by another
        node may so be seen for up to ID_TTL longer; writes always look it up afresh."""
        cached = self._ids.get(name)
        if cached is not None and time.monotonic() - cached[1] < ID_TTL:
            return cached[0]
        return self.load(name)[0].id

    def load(self, name: str) -> tuple[BucketDoc, str]:
        """The bucket's record and its ETag; raise InvalidName or BucketNotFound."""
        try:
            with engine_errors():
                answer = self.client.get_object(Bucket=self.bucket, Key=self.record_key(name))
                body = answer["Body"].read()
        except Missing:
            self._ids.pop(name, None)
            raise BucketNotFound(name) from None
        try:
            record = BucketDoc.model_validate_json(body)
        except ValidationError:
            raise Unavailable(f"the record of bucket '{name}' is damaged") from None
        self._ids[name] = (record.id, time.monotonic())
        return record, answer["ETag"]

    def delete_version(self, target: str, etag: str) -> bool:
        """Delete the object `target` only while it is still at version `etag`: If-Match on the
        delete for engines that honour it, and a look just before for those that ignore it.
        Return whether it was deleted."""
        try:
            with engine_errors():
                now_etag = self.client.head_object(Bucket=self.bucket, Key=target)["ETag"]
            if now_etag != etag:
                return False
            with engine_errors():
                self.client.delete_object(Bucket=self.bucket, Key=target, IfMatch=etag)
        except (Missing, PreconditionFailed):
            return False
        return True

    def any_under(self, prefix: str) -> bool:
        with engine_errors():
            answer = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        return bool(answer.get("KeyCount") or answer.get("Contents"))

    def purge(self, prefix: str) -> int:
        """Delete every object under `prefix`, a thousand per request; return how many."""
        removed = 0
        while True:
            batch = [item["Key"] for item in next(iter(self.pages(prefix)), {}).get("Contents", ())]
            if not batch:
                return removed
            removed += self.delete_keys(batch)

    def delete_keys(self, keys: list[str]) -> int:
        for start in range(0, len(keys), 1000):
            with engine_errors():
                self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True},
                )
        return len(keys)


class S3Folder:
    """A folder of a bucket (a key prefix), listed one level at a time, for walk.walk."""

    def __init__(self, store: Objects, prefix: str) -> None:
        self.store = store
        self.prefix = prefix

    def children(self, partial: str) -> list[tuple[bytes, str, bool]]:
        found: list[tuple[str, bool]] = []
        for page in self.store.pages(self.prefix + partial, delimiter="/"):
            for item in page.get("Contents", ()):
                found.append((item["Key"][len(self.prefix) :], False))
            for common in page.get("CommonPrefixes", ()):
                found.append((common["Prefix"][len(self.prefix) : -1], True))
        return sort_children([(name, folder) for name, folder in found if name and "/" not in name])

    @contextlib.contextmanager
    def descend(self, name: str) -> Iterator[S3Folder]:
        yield S3Folder(self.store, f"{self.prefix}{name}/")
