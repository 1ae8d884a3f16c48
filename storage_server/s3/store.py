"""The S3 store: every bucket of the service lives in one bucket of an S3-compatible engine, so
any number of stateless nodes can serve the same buckets. Where things live is said in
objects.py. File and byte counts are summed from a listing when asked for (an object store has
no atomic counters). Damage marks and the scrub's lease and state are in integrity.py.

It implements the store contract (`store/contract.py`) and raises its StorageErrors; the engine
failing is Unavailable.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from typing import Any

from botocore.exceptions import ClientError

from ..settings import Settings
from ..store import walk
from ..store.contract import Precondition
from ..store.errors import (
    BucketNotFound,
    Conflict,
    Damaged,
    FileNotFound,
    InvalidKey,
    PreconditionFailed,
    Unavailable,
)
from ..store.keys import validate_bucket_name, validate_key, validate_prefix
from ..store.records import BucketChanges, BucketRecord, FileRecord, Page, now
from . import client as s3client
from .client import Missing, engine_errors, is_missing
from .integrity import Integrity
from .objects import LOOKUPS, BucketDoc, S3Folder
from .spool import Spool
from .staged import Staging
from .staging import S3Reader, S3Upload
from .sweep import Lease, sweep_engine

PREPARE_ATTEMPTS = 20
EARLY_CHECK_FROM = 1024 * 1024  # bytes of a declared body from which begin_upload checks the key


class S3Store(Integrity, Staging):
    """Buckets and files in one bucket of an S3-compatible engine. Blocking: call it from threads."""

    @classmethod
    def for_settings(cls, config: Settings) -> S3Store:
        return cls(
            s3client.make_client(config),
            config.s3_bucket,
            config.s3_prefix,
            spool=Spool(config.path, config.s3_part_size),
            staged_expiry=config.staged_expiry,
        )

    def __init__(
        self, client: Any, bucket: str, prefix: str, *, spool: Spool, staged_expiry: float = 24 * 3600.0
    ) -> None:
        super().__init__(client, bucket, prefix, spool=spool)
        self.lease = Lease(self)
        self.staged_expiry = staged_expiry

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
        """Remove this node's spool files that no live upload holds; and, when this process holds
        the sweep lease (one sweeper for every worker of every node), the engine's leftovers (see
        sweep.py). Return how many."""
        removed = self.spool.sweep(grace)
        if self.lease.take():
            removed += sweep_engine(self) + self.sweep_staged()
        return removed

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

    def create_bucket(
        self,
        name: str,
        *,
        public: bool = False,
        description: str | None = None,
        file_size_limit: int | None = None,
        allowed_mime_types: list[str] | None = None,
    ) -> tuple[BucketRecord, bool]:
        """Create a bucket and return it with True, or return the existing one with False."""
        validate_bucket_name(name)
        with contextlib.suppress(BucketNotFound):
            return self.get_bucket(name), False
        when = now()
        record = BucketDoc(
            id=uuid.uuid4().hex,
            public=public,
            description=description,
            file_size_limit=file_size_limit,
            allowed_mime_types=allowed_mime_types,
            created_at=when,
            updated_at=when,
        )
        try:
            with engine_errors():  # If-None-Match: two nodes creating it at once, one wins
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.record_key(name),
                    Body=record.model_dump_json().encode(),
                    ContentType="application/json",
                    IfNoneMatch="*",
                )
        except PreconditionFailed:
            return self.get_bucket(name), False
        self._ids[name] = (record.id, time.monotonic())
        return self._bucket(name, record, counted=False), True

    def list_buckets(self) -> list[BucketRecord]:
        """Every bucket, sorted by name (each one's record and count read in parallel)."""

        def get(name: str) -> BucketRecord | None:
            try:
                return self.get_bucket(name)
            except BucketNotFound:
                return None  # deleted since it was listed

        return [b for b in LOOKUPS.map(get, sorted(self.bucket_names())) if b is not None]

    def check_bucket(self, name: str) -> None:
        """Raise InvalidName or BucketNotFound unless the bucket exists (its record only)."""
        self.load(name)

    def get_bucket(self, name: str, *, counted: bool = True) -> BucketRecord:
        """The bucket's record; its files are counted (a listing) only when `counted`."""
        record, _etag = self.load(name)
        return self._bucket(name, record, counted=counted)

    def update_bucket(self, name: str, changes: BucketChanges) -> BucketRecord:
        """Apply `changes` (public, description); concurrent updates retry on the record's ETag."""
        fields = changes.as_dict()
        for _attempt in range(8):
            record, etag = self.load(name)
            if all(getattr(record, field) == value for field, value in fields.items()):
                return self._bucket(name, record)
            record = record.model_copy(update={**fields, "updated_at": now()})
            try:
                with engine_errors():
                    s3client.put_object(
                        self.client,
                        {"IfMatch": etag},
                        Bucket=self.bucket,
                        Key=self.record_key(name),
                        Body=record.model_dump_json().encode(),
                        ContentType="application/json",
                    )
                return self._bucket(name, record)
            except PreconditionFailed:
                continue  # changed (or deleted) meanwhile: read it again
        raise Conflict("the bucket kept changing under concurrent updates; try again")

    def delete_bucket(self, name: str) -> None:
        """Delete the bucket's record (it is gone at once), then every file in it."""
        record, _etag = self.load(name)
        with engine_errors():
            self.client.delete_object(Bucket=self.bucket, Key=self.record_key(name))
        self._ids.pop(name, None)
        self.purge(self.files_prefix(record.id))

    # -- files ------------------------------------------------------------------------------------

    def begin_upload(
        self,
        bucket: str,
        key: str,
        *,
        size: int | None = None,
        room: int | None = None,
        content_type: str | None = None,
        precondition: Precondition | None = None,
        md5: bool = False,
    ) -> S3Upload:
        """Start an upload; the same errors as the filesystem store's (no 507: the engine has room)."""
        parts = validate_key(key)
        record, _etag = self.load(bucket)
        record.limits().check(size, content_type)
        size = size if size is not None else room
        if size is None or size > EARLY_CHECK_FROM:
            # Fail before a large body is sent; a small one is checked at commit only (the
            # same answer, two round trips fewer).
            current = self.check_way(record.id, parts)
            if precondition is not None:
                precondition(current.record)
        return S3Upload(self, bucket, record.id, "/".join(parts), limits=record.limits(), md5=md5)

    def open_cached(self, bucket: str, key: str, *, head: int) -> None:
        """Every open asks the engine: never without waiting (open_file checks the names)."""
        return None

    def open_file(self, bucket: str, key: str, *, stream: bool = False) -> S3Reader:
        """Open a stored file: a GET when it will be read whole (its first bytes come with the
        record), else a HEAD."""
        parts = validate_key(key)
        target = self.files_prefix(self.read_id(bucket)) + "/".join(parts)
        try:
            with engine_errors():
                if stream:
                    answer = self.client.get_object(Bucket=self.bucket, Key=target)
                else:
                    answer = self.client.head_object(Bucket=self.bucket, Key=target)
        except Missing:
            raise FileNotFound(bucket, key) from None
        record = s3client.file_record(bucket, key, answer)
        return S3Reader(self, target, record, answer["ETag"], answer.get("Body"))

    def delete_file(self, bucket: str, key: str, *, precondition: Precondition | None = None) -> bool:
        """Delete a file; return False if there was none (a folder is left alone)."""
        parts = validate_key(key)
        target = self.files_prefix(self.load(bucket)[0].id) + "/".join(parts)
        current = self.head(target, bucket, key)
        if precondition is not None:
            precondition(current.record)
        if current.record is None:
            return False
        with engine_errors():
            self.client.delete_object(Bucket=self.bucket, Key=target)
        return True

    def move_file(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        precondition: Precondition | None = None,
    ) -> FileRecord:
        """Copy, then delete the source if it is still the version copied: the destination
        appears at once, the source goes after; a source overwritten meanwhile is kept."""
        if (src_bucket, validate_key(src_key)) == (dst_bucket, validate_key(dst_key)):
            reader = self.open_file(src_bucket, src_key)
            reader.close()
            return reader.record
        moved, source_key, etag = self._copy(
            src_bucket, src_key, dst_bucket, dst_key, precondition, move=True
        )
        self.delete_version(source_key, etag)
        return moved

    def copy_file(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        precondition: Precondition | None = None,
    ) -> FileRecord:
        """Copy a file (bytes and metadata) to another key inside the engine."""
        return self._copy(src_bucket, src_key, dst_bucket, dst_key, precondition, move=False)[0]

    def _copy(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        precondition: Precondition | None,
        *,
        move: bool,
    ) -> tuple[FileRecord, str, str]:
        """Copy a file inside the engine; the copy's record, the source's key and its ETag."""
        src_parts, dst_parts = validate_key(src_key), validate_key(dst_key)
        src_id, (dst, _etag) = self.load(src_bucket)[0].id, self.load(dst_bucket)
        dst_id = dst.id
        source_key = self.files_prefix(src_id) + "/".join(src_parts)
        source = self.head(source_key, src_bucket, src_key)
        if source.record is None or source.etag is None:
            raise FileNotFound(src_bucket, src_key)
        if source.record.damaged is not None:
            raise Damaged(src_bucket, src_key)
        dst.limits().check(source.record.size, source.record.content_type)
        current = self.check_way(dst_id, dst_parts)
        if precondition is not None:
            precondition(current.record)
        when = now()
        dates = {"created_at": when, "updated_at": when}
        if move:  # the file keeps its dates, as a rename would
            dates = {"created_at": source.record.created_at, "updated_at": source.record.updated_at}
        elif current.record is not None:  # a copy over a file is an overwrite: its creation stays
            dates["created_at"] = current.record.created_at
        record = source.record.model_copy(update={"bucket": dst_bucket, "path": "/".join(dst_parts), **dates})
        target = self.files_prefix(dst_id) + record.path
        condition = current.write_condition() if precondition is not None else {}
        s3client.copy_object(self.client, self.bucket, source_key, source.etag, record, target, condition)
        self.confirm(dst_bucket, dst_id, target)
        return record, source_key, source.etag

    def list_files(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimited: bool = False,
        limit: int = 1000,
        after: bytes | None = None,
    ) -> Page:
        """One page of the files (and folders) under `prefix`, in UTF-8 byte order."""
        base_prefix = self.files_prefix(self.read_id(bucket))
        try:
            folders, partial = validate_prefix(prefix)
        except InvalidKey:
            return Page(files=[], folders=[])
        base = "".join(f"{f}/" for f in folders)
        found = walk.walk(S3Folder(self, base_prefix + base), base, partial, delimited, after)
        entries, more = walk.first(found, limit)
        keys = [e.key for e in entries if not e.folder]
        heads = LOOKUPS.map(lambda k: self.head(base_prefix + k, bucket, k).record, keys)
        # Some engines (SeaweedFS) keep a folder emptied by deletes and list it as a common
        # prefix: a folder is listed only while an object lies under it.
        common = [e.key for e in entries if e.folder]
        alive = LOOKUPS.map(lambda k: self.any_under(base_prefix + k), common)
        return Page(
            files=[record for record in heads if record is not None],
            folders=[key for key, live in zip(common, alive, strict=True) if live],
            next_after=entries[-1].key if more else None,
        )

    def _bucket(self, name: str, record: BucketDoc, *, counted: bool = True) -> BucketRecord:
        files = size = 0
        if counted:
            for page in self.pages(self.files_prefix(record.id)):
                for item in page.get("Contents", ()):
                    files += 1
                    size += item["Size"]
        fields = record.model_dump(exclude={"id"})
        return BucketRecord(name=name, file_count=files, total_size=size, **fields)
