"""The S3 store's staged uploads (the store contract's `Staging`), kept in the engine so that any
node goes on with any of them: `parts/<id>/upload.json` (bucket, key, the front door's info)
and `parts/<id>/<number>`, one object a part with its digests in its metadata. A part is spooled
to a local file and sent in one PUT when committed; an exclusive writer holds a lease object
`parts/<id>/lock`. Completing streams the parts, in order, into an ordinary upload: the same
commit, checks and limits as every other upload."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from ..store.assemble import Chunks, assemble, extend
from ..store.contract import Precondition, Upload
from ..store.errors import InvalidPart, Locked, NoSuchUpload, StorageError
from ..store.keys import validate_key
from ..store.localdisk import os_errors, write_all
from ..store.records import FileRecord, PartRecord, StagedRecord, now
from .client import Missing, engine_errors
from .objects import LOOKUPS, Objects
from .sweep import Lease

MAX_PART = 10_000
READ = 1024 * 1024
# An exclusive writer renews its lease while it writes; one that died blocks its upload this long
# at most (a tus client resuming after a crash retries through it).
LOCK_SECONDS = 20.0
_ID = re.compile(r"[0-9a-f]{32}")


class S3PartWriter:
    """One part spooled to a local file, PUT when committed; see contract.PartUpload."""

    def __init__(self, store: Objects, upload_id: str, number: int, lease: Lease | None) -> None:
        self._store = store
        self._upload_id = upload_id
        self._number = number
        self._lease = lease
        self._renewed = time.monotonic()
        self._mutex = threading.Lock()
        self._md5 = hashlib.md5()
        self._sha256 = hashlib.sha256()
        self._size = 0
        with os_errors("the part"):
            self._path: Path | None
            self._fd: int | None
            self._path, self._fd = store.spool.open()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with self._mutex:
            if self._fd is None:
                raise StorageError("the part was aborted")
            if self._lease is not None and time.monotonic() - self._renewed > LOCK_SECONDS / 3:
                self._keep_lease()
            with os_errors("the part"):
                write_all(self._fd, data)
            self._md5.update(data)
            self._sha256.update(data)
            self._size += memoryview(data).nbytes

    def _keep_lease(self) -> None:
        """Renew the exclusive lease; raise Locked when it lapsed and another writer took it."""
        assert self._lease is not None
        if not self._lease.take():
            raise Locked()
        self._renewed = time.monotonic()

    def commit(self) -> PartRecord:
        with self._mutex:
            if self._fd is None:
                raise StorageError("the part was aborted")
            try:
                if self._lease is not None:
                    self._keep_lease()
                record = PartRecord(
                    number=self._number,
                    size=self._size,
                    md5=self._md5.hexdigest(),
                    sha256=self._sha256.hexdigest(),
                    created_at=now(),
                )
                store = self._store
                store_staged_info(store, self._upload_id)  # NoSuchUpload when aborted meanwhile
                with engine_errors(), os.fdopen(os.dup(self._fd), "rb") as body:
                    body.seek(0)
                    store.client.put_object(
                        Bucket=store.bucket,
                        Key=part_key(store, self._upload_id, self._number),
                        Body=body,
                        ContentLength=self._size,
                        Metadata={
                            "md5": record.md5,
                            "sha256": record.sha256,
                            "created": record.created_at.isoformat(),
                        },
                    )
                return record
            finally:
                self._discard()

    def abort(self) -> None:
        with self._mutex:
            self._discard()

    def _discard(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        path, self._path = self._path, None
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        lease, self._lease = self._lease, None
        if lease is not None:
            lease.release()


def prefix_of(store: Objects, upload_id: str) -> str:
    if not _ID.fullmatch(upload_id):
        raise NoSuchUpload(upload_id)
    return f"{store.prefix}parts/{upload_id}/"


def part_key(store: Objects, upload_id: str, number: int) -> str:
    return f"{prefix_of(store, upload_id)}{number:05d}"


def store_staged_info(store: Objects, upload_id: str) -> StagedRecord:
    """The staged upload's record without its parts; raise NoSuchUpload."""
    try:
        with engine_errors():
            answer = store.client.get_object(
                Bucket=store.bucket, Key=prefix_of(store, upload_id) + "upload.json"
            )
            body = answer["Body"].read()
    except Missing:
        raise NoSuchUpload(upload_id) from None
    return StagedRecord.model_validate_json(body)


class Staging(Objects):
    """Staged uploads in the engine (mixed into S3Store)."""

    staged_expiry = 24 * 3600.0
    appends_in_place = False  # a part is an object: appending rewrites it whole

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
    ) -> Upload:
        raise NotImplementedError  # the store's own (S3Store)

    def begin_staged(self, bucket: str, key: str, *, info: Mapping[str, str] | None = None) -> StagedRecord:
        """See contract.Staging."""
        validate_key(key)
        self.load(bucket)  # InvalidName, BucketNotFound
        record = StagedRecord(
            id=uuid.uuid4().hex, bucket=bucket, key=key, info=dict(info or {}), created_at=now()
        )
        with engine_errors():
            self.client.put_object(
                Bucket=self.bucket,
                Key=prefix_of(self, record.id) + "upload.json",
                Body=record.model_dump_json(exclude={"parts"}).encode(),
                ContentType="application/json",
            )
        return record

    def get_staged(self, upload_id: str) -> StagedRecord:
        record = store_staged_info(self, upload_id)
        base = prefix_of(self, upload_id)
        keys = [
            item["Key"]
            for page in self.pages(base)
            for item in page.get("Contents", ())
            if item["Key"][len(base) :].isdigit()
        ]
        parts = [p for p in LOOKUPS.map(self._part, sorted(keys)) if p is not None]
        return record.model_copy(update={"parts": parts})

    def list_staged(self, bucket: str) -> list[StagedRecord]:
        self.load(bucket)
        found = []
        for page in self.pages(f"{self.prefix}parts/", "/"):
            for common in page.get("CommonPrefixes", ()):
                with contextlib.suppress(NoSuchUpload):
                    record = store_staged_info(self, common["Prefix"].rstrip("/").rsplit("/", 1)[-1])
                    if record.bucket == bucket:
                        found.append(record)
        return sorted(found, key=lambda r: r.created_at)

    def begin_part(
        self, upload_id: str, number: int, *, exclusive: bool = False, append: bool = False
    ) -> S3PartWriter:
        if not 1 <= number <= MAX_PART:
            raise InvalidPart(f"a part number is 1 to {MAX_PART}")
        store_staged_info(self, upload_id)
        lease = None
        if exclusive:
            lease = Lease(self, LOCK_SECONDS, f"parts/{upload_id}/lock")
            if not lease.take():
                raise Locked()
        try:
            writer = S3PartWriter(self, upload_id, number, lease)
        except BaseException:
            if lease is not None:
                lease.release()
            raise
        if append:
            try:
                chunks = self._read_part(upload_id, number)
            except InvalidPart:
                return writer  # nothing stored under that number yet
            except BaseException:
                writer.abort()
                raise
            extend(writer, chunks)
        return writer

    def complete_staged(
        self,
        upload_id: str,
        numbers: Sequence[int],
        *,
        content_type: str,
        name: str,
        metadata: Mapping[str, str] | None = None,
        precondition: Precondition | None = None,
        md5: bool = False,
    ) -> FileRecord:
        record = self.get_staged(upload_id)
        done = assemble(
            self.begin_upload,
            record,
            numbers,
            lambda number: self._read_part(upload_id, number),
            content_type=content_type,
            name=name,
            metadata=metadata,
            precondition=precondition,
            md5=md5,
        )
        self.purge(prefix_of(self, upload_id))
        return done

    def _read_part(self, upload_id: str, number: int) -> Chunks:
        try:
            with engine_errors():
                body = self.client.get_object(Bucket=self.bucket, Key=part_key(self, upload_id, number))[
                    "Body"
                ]
        except Missing:
            raise InvalidPart(f"part {number} is not there (replaced or aborted meanwhile)") from None
        return _chunks(body)

    def abort_staged(self, upload_id: str) -> None:
        store_staged_info(self, upload_id)
        self.purge(prefix_of(self, upload_id))

    def sweep_staged(self, expiry: float | None = None) -> int:
        """Remove staged uploads none of whose objects changed for `expiry` seconds (default the
        store's); return how many."""
        cutoff = now() - timedelta(seconds=self.staged_expiry if expiry is None else expiry)
        removed = 0
        for page in self.pages(f"{self.prefix}parts/", "/"):
            for common in page.get("CommonPrefixes", ()):
                items = [i for p in self.pages(common["Prefix"]) for i in p.get("Contents", ())]
                if all(i["LastModified"] < cutoff for i in items):
                    self.purge(common["Prefix"])
                    removed += 1
        return removed

    def _part(self, key: str) -> PartRecord | None:
        try:
            with engine_errors():
                head = self.client.head_object(Bucket=self.bucket, Key=key)
        except Missing:
            return None  # aborted meanwhile
        meta = head.get("Metadata") or {}
        return PartRecord(
            number=int(key.rsplit("/", 1)[-1]),
            size=head["ContentLength"],
            md5=meta.get("md5", ""),
            sha256=meta.get("sha256", ""),
            created_at=meta.get("created") or head["LastModified"],
        )


def _chunks(body: Any) -> Chunks:
    """The bytes of a part's GET body, READ at a time; the body is closed at the end."""
    with contextlib.closing(body):
        while True:
            with engine_errors():
                chunk = body.read(READ)
            if not chunk:
                return
            yield chunk
