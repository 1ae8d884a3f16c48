"""The S3 store's two open objects: an S3Reader streams a stored object out with ranged GETs; an
S3Upload spools bytes to local files one part at a time and sends them: up to one part as a single
PUT, beyond as a multipart upload into a staging key, PARTS_IN_FLIGHT parts at a time (so memory
and spool stay flat at any size), copied inside the engine to its key with the metadata (the
sha256 is known only at the end, and an object's metadata cannot change once written)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, BinaryIO

from ..store.contract import Precondition
from ..store.errors import FileChanged, PreconditionFailed, StorageError
from ..store.limits import NONE, Limits
from ..store.localdisk import os_errors, write_all
from ..store.records import FileRecord, now
from . import client as s3client
from .client import engine_errors
from .objects import Objects

MAX_PART = 64 * 1024 * 1024
BIG_PARTS_FROM = 5000  # parts after this many grow to MAX_PART (S3 allows 10,000 parts)
# Parts of one upload on their way at once: the writer waits while that many are, so an upload
# holds at most PARTS_IN_FLIGHT + 1 part files. A few suffice to keep the engine busy.
PARTS_IN_FLIGHT = 4
PARTS = ThreadPoolExecutor(s3client.PART_THREADS, thread_name_prefix="s3-part")  # shared by uploads


class S3Upload:
    """One upload on its way to the engine; `commit` makes it visible, `abort` discards it.
    Calls are serialized, so an `abort` on disconnect never runs under a `write`. Full parts go
    out on PARTS while writes go on; a write waits while PARTS_IN_FLIGHT are under way (the
    back-pressure a slow engine puts on the client), and a part that failed fails the next write
    or the commit, the upload then discarded."""

    def __init__(
        self,
        store: Objects,
        bucket: str,
        bucket_id: str,
        key: str,
        *,
        limits: Limits = NONE,
        md5: bool = False,
    ) -> None:
        self._store = store
        self._limits = limits
        self._bucket = bucket
        self._bucket_id = bucket_id
        self._key = key
        self._lock = threading.Lock()
        self._hash = hashlib.sha256()
        self._md5 = hashlib.md5() if md5 else None
        self.size = 0
        self._spooled = 0  # bytes in the part file not yet sent
        self._path: Path | None
        self._fd: int | None
        with os_errors("the upload"):
            self._path, self._fd = store.spool.open()
        self._staging: str | None = None  # with a multipart upload: its key,
        self._upload_id: str | None = None  # its id,
        self._parts: list[dict[str, Any]] = []  # the parts the engine took,
        self._sending: dict[Future[dict[str, Any]], tuple[Path, int]] = {}  # those under way (files)
        self._numbered = 0  # and how many parts were handed out

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append data, sending a part to the engine each time one is full."""
        with self._lock:
            fd = self._live_fd()
            self._collect(until=PARTS_IN_FLIGHT)  # a part that failed meanwhile fails this write
            self._limits.check_size(self.size + memoryview(data).nbytes)
            self._hash.update(data)
            if self._md5 is not None:
                self._md5.update(data)
            with os_errors("the upload"):
                written = write_all(fd, data, self._spooled)
            self._spooled += written
            self.size += written
            if self._spooled >= self._part_size():
                self._send_part()

    def sha256(self) -> str:
        with self._lock:
            return self._hash.hexdigest()

    def commit(
        self,
        *,
        content_type: str,
        name: str,
        metadata: Mapping[str, str] | None = None,
        precondition: Precondition | None = None,
    ) -> FileRecord:
        """PUT the file (or finish its multipart upload and copy it into place) with its record;
        raise BucketNotFound, Conflict, PreconditionFailed, Unavailable. Discarded either way."""
        with self._lock:
            self._live_fd()
            try:
                self._limits.check(self.size, content_type)
                return self._commit(content_type, name, dict(metadata or {}), precondition)
            finally:
                self._discard()

    def abort(self) -> None:
        with self._lock:
            self._discard()

    def _commit(
        self, content_type: str, name: str, metadata: dict[str, str], precondition: Precondition | None
    ) -> FileRecord:
        store = self._store
        target = store.files_key(self._bucket_id, self._key)
        current = store.check_way(self._bucket_id, tuple(self._key.split("/")))
        if precondition is not None:
            precondition(current.record)
        when = now()
        record = FileRecord(
            bucket=self._bucket,
            path=self._key,
            name=name,
            size=self.size,
            content_type=content_type,
            sha256=self._hash.hexdigest(),
            md5=self._md5.hexdigest() if self._md5 is not None else None,
            metadata=metadata,
            created_at=current.record.created_at if current.record is not None else when,
            updated_at=when,
        )
        # With conditions, the engine refuses the write if the key changed since it was checked.
        condition = current.write_condition() if precondition is not None else {}
        if self._upload_id is None:
            with engine_errors(), self._part_file() as body:
                s3client.put_object(
                    store.client,
                    condition,
                    Bucket=store.bucket,
                    Key=target,
                    Body=body,
                    ContentLength=self._spooled,
                    ContentType=content_type,
                    Metadata=s3client.file_meta(record),
                )
        else:
            staged = self._complete()
            s3client.copy_object(
                store.client, store.bucket, staged["key"], staged["etag"], record, target, condition
            )
        store.confirm(self._bucket, self._bucket_id, target)
        return record

    def _part_size(self) -> int:
        return self._store.spool.part_size if self._numbered < BIG_PARTS_FROM else MAX_PART

    @contextlib.contextmanager
    def _part_file(self) -> Any:
        """The spooled bytes as a file object read from the start (the part file's own fd)."""
        fd = os.dup(self._live_fd())
        with os.fdopen(fd, "rb") as body:
            body.seek(0)
            yield body

    def _send_part(self) -> None:
        """Hand the full part file to PARTS (once fewer than PARTS_IN_FLIGHT are under way) and
        start the next one."""
        store = self._store
        if self._upload_id is None:
            with engine_errors():
                self._staging = store.staging_key()
                started = store.client.create_multipart_upload(Bucket=store.bucket, Key=self._staging)
            self._upload_id = started["UploadId"]
        self._collect(until=PARTS_IN_FLIGHT - 1)
        assert self._path is not None
        assert self._staging is not None
        full = (self._path, self._live_fd())
        with os_errors("the upload"):
            self._path, self._fd = store.spool.open()
        self._numbered += 1
        sent = PARTS.submit(
            _put_part, store, self._staging, self._upload_id, self._numbered, full, self._spooled
        )
        self._sending[sent] = full
        self._spooled = 0

    def _collect(self, *, until: int) -> None:
        """Take in the parts sent, waiting until at most `until` are under way; when one failed,
        discard the upload and raise its error."""
        while True:
            done = [sent for sent in self._sending if sent.done()]
            if not done and len(self._sending) <= until:
                return
            if not done:
                done = list(wait(self._sending, return_when=FIRST_COMPLETED).done)
            for sent in done:
                del self._sending[sent]
                error = sent.exception()
                if error is not None:
                    self._discard()
                    raise error
                self._parts.append(sent.result())

    def _complete(self) -> dict[str, str]:
        """Send the last part, wait for every part, and complete the multipart upload; its staged
        key and ETag."""
        if self._spooled:
            self._send_part()
        self._collect(until=0)
        store = self._store
        with engine_errors():
            done = store.client.complete_multipart_upload(
                Bucket=store.bucket,
                Key=self._staging,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": sorted(self._parts, key=lambda part: part["PartNumber"])},
            )
        self._upload_id = None  # completed: nothing to abort, the staged object is removed instead
        assert self._staging is not None
        return {"key": self._staging, "etag": done["ETag"]}

    def _live_fd(self) -> int:
        if self._fd is None:
            raise StorageError("the upload was aborted")
        return self._fd

    def _discard(self) -> None:
        """Drop the parts not yet started and wait for those under way (none may land after the
        abort); close and remove the part file; abort the multipart upload or remove the staged
        object."""
        for sent, spooled in self._sending.items():
            if sent.cancel():
                _remove(*spooled)
        wait(self._sending)
        self._sending.clear()
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        path, self._path = self._path, None
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        store = self._store
        upload_id, staging, self._upload_id, self._staging = self._upload_id, self._staging, None, None
        with contextlib.suppress(Exception):  # what is left is removed by a later sweep
            if upload_id is not None:
                store.client.abort_multipart_upload(Bucket=store.bucket, Key=staging, UploadId=upload_id)
            elif staging is not None:
                store.client.delete_object(Bucket=store.bucket, Key=staging)


def _put_part(
    store: Objects, key: str, upload_id: str, number: int, spooled: tuple[Path, int], size: int
) -> dict[str, Any]:
    """Send a part file (its path and fd, which this takes over and removes) as part `number`;
    the part's entry for CompleteMultipartUpload."""
    try:
        body: BinaryIO
        with os.fdopen(spooled[1], "rb", closefd=False) as body, engine_errors():
            sent = store.client.upload_part(
                Bucket=store.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                ContentLength=size,
            )
        return {"ETag": sent["ETag"], "PartNumber": number}
    finally:
        _remove(*spooled)


def _remove(path: Path, fd: int) -> None:
    """Remove a part file, then close it (its flock keeps the spool's sweep off until it is gone)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    os.close(fd)


class S3Reader:
    """A stored object streamed out: ranged GETs pinned to the version whose record was read
    (If-Match on its ETag), the first one possibly made with the open."""

    def __init__(self, store: Objects, key: str, record: FileRecord, etag: str, first: Any = None) -> None:
        self._store = store
        self._key = key
        self._etag = etag
        self.record = record
        self.offset = 0
        self._end = record.size
        self._body = first  # an open GET body positioned at `offset`, if any

    def seek(self, offset: int, length: int) -> None:
        if (offset, offset + length) != (self.offset, self._end):
            self._close_body()
        self.offset, self._end = offset, offset + length

    def read(self, size: int) -> bytes:
        size = min(size, self._end - self.offset)
        if size <= 0:
            return b""
        data = self._read_body(size)
        self.offset += len(data)
        return data

    def _read_body(self, size: int) -> bytes:
        if self._body is None:
            try:
                with engine_errors():
                    answer = self._store.client.get_object(
                        Bucket=self._store.bucket,
                        Key=self._key,
                        Range=f"bytes={self.offset}-{self._end - 1}",
                        IfMatch=self._etag,  # the same version as the record sent in the headers
                    )
            except (PreconditionFailed, s3client.Missing):
                raise FileChanged(self.record.bucket, self.record.path) from None
            self._body = answer["Body"]
        chunks, left = [], size
        with engine_errors():
            while left > 0:
                chunk = self._body.read(left)
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        return b"".join(chunks)

    def _close_body(self) -> None:
        body, self._body = self._body, None
        if body is not None:
            body.close()

    def close(self) -> None:
        self._close_body()
