"""The S3 store: every bucket of the service lives in one bucket of an S3-compatible engine, so
any number of stateless nodes can serve the same buckets.

Layout under `s3_prefix` in `s3_bucket`:
- `buckets/<name>`: a bucket's record (JSON: its id, public, description, dates);
- `files/<id>/<key>`: a file, its record in the object's metadata (see s3client.file_meta);
- `staging/<uuid>`: a multipart upload being assembled, copied to `files/` with its metadata.
Files live under the bucket's id, not its name: a file committed into a bucket deleted meanwhile
can never show up in a new bucket of the same name. File and byte counts are summed from a
listing when asked for (an object store has no atomic counters).

Raises the StorageError subclasses of `errors.py`; the engine failing is Unavailable.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ValidationError

from . import listing, s3client
from .errors import BucketNotFound, Conflict, FileNotFound, InvalidKey, PreconditionFailed, Unavailable
from .keys import is_bucket_name, validate_bucket_name, validate_key, validate_prefix
from .models import Bucket, File, Listing
from .s3client import Missing, is_missing, translated
from .s3staging import S3Reader, S3Upload, Spool
from .settings import Settings
from .store import Precondition

STALE = timedelta(days=1)  # a multipart or staged upload this old is a dead node's leftover
ORPHAN_GRACE = timedelta(hours=1)  # files of a deleted bucket are swept once untouched this long
PREPARE_ATTEMPTS = 20
EARLY_CHECK_FROM = 1024 * 1024  # bytes of a declared body from which begin_upload checks the key
ID_TTL = 1.0  # seconds a bucket's id is reused for reads (see S3Store._read_id)
LOOKUPS = ThreadPoolExecutor(16, thread_name_prefix="s3-lookup")  # a listing's HEADs, the buckets' counts


def _now() -> datetime:
    return datetime.now(UTC)


class BucketRecord(BaseModel):
    """What `buckets/<name>` holds."""

    id: str
    public: bool
    description: str | None
    created_at: datetime
    updated_at: datetime


class Current:
    """What a key holds now: its record and the engine's ETag (None, None when nothing)."""

    def __init__(self, record: File | None = None, etag: str | None = None) -> None:
        self.record = record
        self.etag = etag

    def write_condition(self) -> dict[str, str]:
        """PUT arguments that make the engine refuse the write if the key changed since."""
        return {"IfMatch": self.etag} if self.etag else {"IfNoneMatch": "*"}


class S3Folder:
    """A folder of a bucket (a key prefix), listed one level at a time, for listing.walk."""

    def __init__(self, store: S3Store, prefix: str) -> None:
        self.store = store
        self.prefix = prefix

    def children(self, partial: str) -> list[tuple[bytes, str, bool]]:
        found: list[tuple[str, bool]] = []
        for page in self.store.pages(self.prefix + partial, delimiter="/"):
            for item in page.get("Contents", ()):
                found.append((item["Key"][len(self.prefix) :], False))
            for common in page.get("CommonPrefixes", ()):
                found.append((common["Prefix"][len(self.prefix) : -1], True))
        return listing.sort_children([(name, folder) for name, folder in found if name and "/" not in name])

    @contextlib.contextmanager
    def descend(self, name: str) -> Iterator[S3Folder]:
        yield S3Folder(self.store, f"{self.prefix}{name}/")


class S3Store:
    """Buckets and files in one bucket of an S3-compatible engine. Blocking: call it from threads."""

    @classmethod
    def for_settings(cls, config: Settings) -> S3Store:
        return cls(
            s3client.make_client(config),
            config.s3_bucket,
            config.s3_prefix,
            spool=Spool(config.path, config.s3_part_size),
        )

    def __init__(self, client: Any, bucket: str, prefix: str, *, spool: Spool) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.spool = spool
        self._ids: dict[str, tuple[str, float]] = {}  # bucket name: (id, when read), for reads

    def __repr__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix} at {self.client.meta.endpoint_url}"

    # -- start-up, health, upkeep -----------------------------------------------------------------

    def prepare(self) -> None:
        """Create the spool folder, and the S3 bucket if it is missing; raise Unavailable when the
        engine cannot be reached or refuses the credentials."""
        self.spool.prepare()
        try:
            for attempt in range(PREPARE_ATTEMPTS):
                try:
                    self.client.head_bucket(Bucket=self.bucket)
                    break
                except ClientError as exc:
                    if not is_missing(exc) or attempt == PREPARE_ATTEMPTS - 1:
                        raise
                try:
                    self._create_target()
                    break
                except ClientError as exc:
                    if not (is_missing(exc) or s3client.code(exc) == "NoSuchBucket"):
                        raise
                # Nodes starting together may race to create it (and an engine's gateways may
                # take a moment to agree): look again.
                time.sleep(0.5)
        except ClientError as exc:
            raise Unavailable(f"cannot use S3 bucket {self.bucket}: {s3client.code(exc) or exc}") from exc
        except Exception as exc:
            raise Unavailable(f"cannot reach the object store: {exc}") from exc

    def _create_target(self) -> None:
        try:
            self.client.create_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if s3client.code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise  # another node creating it at the same time is fine

    def sweep(self, grace: float = 60.0) -> int:
        """Remove spool files no live upload holds, multipart uploads and staged objects older
        than a day, and the files of deleted buckets (a purge cut short); return how many."""
        removed = self.spool.sweep(grace)
        cutoff = _now() - STALE
        with translated():
            for page in self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            ):
                for upload in page.get("Uploads", ()):
                    if upload["Initiated"] < cutoff:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        removed += 1
            stale = [
                item["Key"]
                for page in self.pages(f"{self.prefix}staging/")
                for item in page.get("Contents", ())
                if item["LastModified"] < cutoff
            ]
            removed += self._delete_keys(stale)
            # Folders first, records second: a bucket created in between has no folder listed.
            folders = [
                c["Prefix"]
                for page in self.pages(f"{self.prefix}files/", "/")
                for c in page.get("CommonPrefixes", ())
            ]
            live = set()
            for name in self._bucket_names():
                with contextlib.suppress(BucketNotFound):
                    live.add(self._load(name)[0].id)
            for folder in folders:
                if folder.split("/")[-2] not in live and self._untouched_since(folder, _now() - ORPHAN_GRACE):
                    removed += self._purge(folder)
        return removed

    def _untouched_since(self, prefix: str, cutoff: datetime) -> bool:
        """No object of the first page under `prefix` changed after `cutoff`: a deleted bucket's
        leftovers, not a bucket whose record this node cannot see yet."""
        page = next(iter(self.pages(prefix)), {})
        return all(item["LastModified"] < cutoff for item in page.get("Contents", ()))

    def register_worker(self) -> None:
        pass  # nothing a worker changes needs repair if it dies: uploads are all or nothing

    def unregister_worker(self) -> None:
        pass

    def recover(self) -> list[int]:
        return []

    def is_writable(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception:
            return False
        return self.spool.is_writable()

    def free_bytes(self) -> int | None:
        return None

    # -- buckets ----------------------------------------------------------------------------------

    def create_bucket(self, name: str, *, public: bool, description: str | None) -> tuple[Bucket, bool]:
        """Create a bucket and return it with True, or return the existing one with False."""
        validate_bucket_name(name)
        with contextlib.suppress(BucketNotFound):
            return self.get_bucket(name), False
        now = _now()
        record = BucketRecord(
            id=uuid.uuid4().hex, public=public, description=description, created_at=now, updated_at=now
        )
        try:
            with translated():  # If-None-Match: two nodes creating it at once, one wins
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self._record_key(name),
                    Body=record.model_dump_json().encode(),
                    ContentType="application/json",
                    IfNoneMatch="*",
                )
        except PreconditionFailed:
            return self.get_bucket(name), False
        self._ids[name] = (record.id, time.monotonic())
        return self._bucket(name, record, counted=False), True

    def list_buckets(self) -> list[Bucket]:
        """Every bucket, sorted by name (each one's record and count read in parallel)."""

        def get(name: str) -> Bucket | None:
            try:
                return self.get_bucket(name)
            except BucketNotFound:
                return None  # deleted since it was listed

        return [b for b in LOOKUPS.map(get, sorted(self._bucket_names())) if b is not None]

    def check_bucket(self, name: str) -> None:
        """Raise InvalidName or BucketNotFound unless the bucket exists (its record only)."""
        self._load(name)

    def get_bucket(self, name: str) -> Bucket:
        record, _etag = self._load(name)
        return self._bucket(name, record)

    def update_bucket(self, name: str, changes: dict[str, Any]) -> Bucket:
        """Apply `changes` (public, description); concurrent updates retry on the record's ETag."""
        for _attempt in range(8):
            record, etag = self._load(name)
            if all(getattr(record, field) == value for field, value in changes.items()):
                return self._bucket(name, record)
            record = record.model_copy(update={**changes, "updated_at": _now()})
            try:
                with translated():
                    s3client.put_object(
                        self.client,
                        {"IfMatch": etag},
                        Bucket=self.bucket,
                        Key=self._record_key(name),
                        Body=record.model_dump_json().encode(),
                        ContentType="application/json",
                    )
                return self._bucket(name, record)
            except PreconditionFailed:
                continue  # changed (or deleted) meanwhile: read it again
        raise Conflict("the bucket kept changing under concurrent updates; try again")

    def delete_bucket(self, name: str) -> None:
        """Delete the bucket's record (it is gone at once), then every file in it."""
        record, _etag = self._load(name)
        with translated():
            self.client.delete_object(Bucket=self.bucket, Key=self._record_key(name))
        self._ids.pop(name, None)
        self._purge(self._files(record.id))

    # -- files ------------------------------------------------------------------------------------

    def begin_upload(
        self, bucket: str, key: str, size: int | None = None, precondition: Precondition | None = None
    ) -> S3Upload:
        """Start an upload; the same errors as the filesystem store's (no 507: the engine has room)."""
        parts = validate_key(key)
        record, _etag = self._load(bucket)
        if size is None or size > EARLY_CHECK_FROM:
            # Fail before a large body is sent; a small one is checked at commit only (the
            # same answer, two round trips fewer).
            current = self.check_way(record.id, parts)
            if precondition is not None:
                precondition(current.record)
        return S3Upload(self, bucket, record.id, "/".join(parts))

    def open_file(self, bucket: str, key: str, read_ahead: int = 0) -> S3Reader:
        """Open a stored file: a GET when its first bytes are wanted now, else a HEAD."""
        parts = validate_key(key)
        target = self._files(self._read_id(bucket)) + "/".join(parts)
        try:
            with translated():
                if read_ahead:
                    answer = self.client.get_object(Bucket=self.bucket, Key=target)
                else:
                    answer = self.client.head_object(Bucket=self.bucket, Key=target)
        except Missing:
            raise FileNotFound(bucket, key) from None
        reader = S3Reader(
            self, target, s3client.file_record(bucket, key, answer), answer["ETag"], answer.get("Body")
        )
        if read_ahead:
            reader.read_ahead(read_ahead)
        return reader

    def delete_file(self, bucket: str, key: str, precondition: Precondition | None = None) -> bool:
        """Delete a file; return False if there was none (a folder is left alone)."""
        parts = validate_key(key)
        target = self._files(self._load(bucket)[0].id) + "/".join(parts)
        current = self.head(target, bucket, key)
        if precondition is not None:
            precondition(current.record)
        if current.record is None:
            return False
        with translated():
            self.client.delete_object(Bucket=self.bucket, Key=target)
        return True

    def move_file(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        precondition: Precondition | None = None,
    ) -> File:
        """Copy, then delete the source: the destination appears at once, the source goes after."""
        if (src_bucket, validate_key(src_key)) == (dst_bucket, validate_key(dst_key)):
            reader = self.open_file(src_bucket, src_key)
            reader.close()
            return reader.record
        moved = self.copy_file(src_bucket, src_key, dst_bucket, dst_key, precondition, keep_dates=True)
        self.delete_file(src_bucket, src_key)
        return moved

    def copy_file(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        precondition: Precondition | None = None,
        *,
        keep_dates: bool = False,
    ) -> File:
        """Copy a file (bytes and metadata) to another key inside the engine."""
        src_parts, dst_parts = validate_key(src_key), validate_key(dst_key)
        src_id, dst_id = self._load(src_bucket)[0].id, self._load(dst_bucket)[0].id
        source_key = self._files(src_id) + "/".join(src_parts)
        source = self.head(source_key, src_bucket, src_key)
        if source.record is None or source.etag is None:
            raise FileNotFound(src_bucket, src_key)
        current = self.check_way(dst_id, dst_parts)
        if precondition is not None:
            precondition(current.record)
        now = _now()
        dates = {"created_at": now, "updated_at": now}
        if keep_dates:  # a move: the file keeps its dates, as a rename would
            dates = {"created_at": source.record.created_at, "updated_at": source.record.updated_at}
        elif current.record is not None:  # a copy over a file is an overwrite: its creation stays
            dates["created_at"] = current.record.created_at
        record = source.record.model_copy(update={"bucket": dst_bucket, "path": "/".join(dst_parts), **dates})
        target = self._files(dst_id) + record.path
        condition = current.write_condition() if precondition is not None else {}
        s3client.copy_object(self.client, self.bucket, source_key, source.etag, record, target, condition)
        self.confirm(dst_bucket, dst_id, target)
        return record

    def list_files(
        self, bucket: str, prefix: str, delimited: bool, limit: int, after: bytes | None
    ) -> Listing:
        """One page of the files (and folders) under `prefix`, in UTF-8 byte order."""
        base_prefix = self._files(self._read_id(bucket))
        entries: list[listing.Entry] = []
        more = False
        try:
            folders, partial = validate_prefix(prefix)
        except InvalidKey:
            folders, partial = None, ""
        if folders is not None:
            base = "".join(f"{f}/" for f in folders)
            for entry in listing.walk(S3Folder(self, base_prefix + base), base, partial, delimited, after):
                if len(entries) == limit:
                    more = True
                    break
                entries.append(entry)
        keys = [e.key for e in entries if not e.folder]
        heads = LOOKUPS.map(lambda k: self.head(base_prefix + k, bucket, k).record, keys)
        return Listing(
            bucket=bucket,
            prefix=prefix,
            delimiter="/" if delimited else None,
            files=[record for record in heads if record is not None],
            folders=[e.key for e in entries if e.folder],
            next_after=entries[-1].key if more else None,
        )

    # -- helpers shared with S3Upload ---------------------------------------------------------------

    def head(self, target: str, bucket: str, key: str) -> Current:
        """What the object `target` (the file `key` of `bucket`) is now."""
        try:
            with translated():
                answer = self.client.head_object(Bucket=self.bucket, Key=target)
        except Missing:
            return Current()
        return Current(s3client.file_record(bucket, key, answer), answer["ETag"])

    def check_way(self, bucket_id: str, parts: tuple[str, ...]) -> Current:
        """The key's current state; raise Conflict when a file or folder blocks it, as on a
        filesystem (checked, not enforced: two nodes racing can still create both)."""
        base, key = self._files(bucket_id), "/".join(parts)
        # All at once: one round trip of latency, however deep the key.
        folder = LOOKUPS.submit(self._any, f"{base}{key}/")
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
            alive = self._load(bucket)[0].id == bucket_id
        except BucketNotFound:
            alive = False
        if not alive:
            with contextlib.suppress(Exception):
                self.client.delete_object(Bucket=self.bucket, Key=target)
            raise BucketNotFound(bucket)

    def bucket_id(self, name: str) -> str:
        """The id the bucket's files are stored under; raise BucketNotFound."""
        return self._load(name)[0].id

    def files_key(self, bucket_id: str, key: str) -> str:
        return self._files(bucket_id) + key

    def staging_key(self) -> str:
        return f"{self.prefix}staging/{uuid.uuid4().hex}"

    def pages(self, prefix: str, delimiter: str = "") -> Iterator[dict[str, Any]]:
        """ListObjectsV2 pages of the keys under `prefix`."""
        paginator = self.client.get_paginator("list_objects_v2")
        with translated():
            yield from paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter=delimiter)

    # -- internals --------------------------------------------------------------------------------

    def _record_key(self, name: str) -> str:
        return f"{self.prefix}buckets/{validate_bucket_name(name)}"

    def _files(self, bucket_id: str) -> str:
        return f"{self.prefix}files/{bucket_id}/"

    def _bucket_names(self) -> list[str]:
        start = f"{self.prefix}buckets/"
        names = (item["Key"][len(start) :] for page in self.pages(start) for item in page.get("Contents", ()))
        return [name for name in names if is_bucket_name(name)]  # anything else there is not ours

    def _read_id(self, name: str) -> str:
        """The bucket's id for a read, looked up at most once a second per worker: a read costs
        one request to the engine, not two. A bucket deleted (or deleted and recreated) by another
        node may so be seen for up to ID_TTL longer; writes always look it up afresh."""
        cached = self._ids.get(name)
        if cached is not None and time.monotonic() - cached[1] < ID_TTL:
            return cached[0]
        return self._load(name)[0].id

    def _load(self, name: str) -> tuple[BucketRecord, str]:
        """The bucket's record and its ETag; raise InvalidName or BucketNotFound."""
        try:
            with translated():
                answer = self.client.get_object(Bucket=self.bucket, Key=self._record_key(name))
                body = answer["Body"].read()
        except Missing:
            self._ids.pop(name, None)
            raise BucketNotFound(name) from None
        try:
            record = BucketRecord.model_validate_json(body)
        except ValidationError:
            raise Unavailable(f"the record of bucket '{name}' is damaged") from None
        self._ids[name] = (record.id, time.monotonic())
        return record, answer["ETag"]

    def _bucket(self, name: str, record: BucketRecord, *, counted: bool = True) -> Bucket:
        files = size = 0
        if counted:
            for page in self.pages(self._files(record.id)):
                for item in page.get("Contents", ()):
                    files += 1
                    size += item["Size"]
        fields = record.model_dump(exclude={"id"})
        return Bucket(name=name, file_count=files, total_size=size, **fields)

    def _any(self, prefix: str) -> bool:
        with translated():
            answer = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix, MaxKeys=1)
        return bool(answer.get("KeyCount") or answer.get("Contents"))

    def _purge(self, prefix: str) -> int:
        """Delete every object under `prefix`, a thousand per request; return how many."""
        removed = 0
        while True:
            batch = [item["Key"] for item in next(iter(self.pages(prefix)), {}).get("Contents", ())]
            if not batch:
                return removed
            removed += self._delete_keys(batch)

    def _delete_keys(self, keys: list[str]) -> int:
        for start in range(0, len(keys), 1000):
            with translated():
                self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in keys[start : start + 1000]], "Quiet": True},
                )
        return len(keys)
