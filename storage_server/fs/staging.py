"""The filesystem store's two open-file objects: a BlobReader streams a stored file out, an
Upload fills a temp file and commits it into place (the only way a file ever becomes visible)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from ..store.contract import Precondition
from ..store.errors import Conflict, StorageError
from ..store.limits import NONE, Limits
from ..store.localdisk import os_errors, write_all
from ..store.records import FileRecord, now
from . import ops as fsops
from .layout import Layout

SPACE_CHECK_EVERY = 8 * 1024 * 1024  # bytes written between two looks at the free space
WRITEBACK_EVERY = 8 * 1024 * 1024  # bytes written between two requests to start writeback


class BlobReader:
    """An open stored file: `record` describes it, `read` returns its next bytes. The descriptor
    pins the version opened: an overwrite renames a new inode into place."""

    def __init__(self, fd: int, record: FileRecord) -> None:
        self._fd = fd
        self.offset = 0
        self.end = record.size
        self.record = record

    def fileno(self) -> int:
        return self._fd

    def seek(self, offset: int, length: int) -> None:
        self.offset, self.end = offset, offset + length

    def read(self, size: int) -> bytes:
        """The next `size` bytes at most; fewer only at the end of the span."""
        size = min(size, self.end - self.offset)
        if size <= 0:
            return b""
        data = os.pread(self._fd, size, self.offset)
        self.offset += len(data)
        return data

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


class Upload:
    """A temp file being filled with one upload; `commit` makes it visible, `abort` discards it.

    Safe to call from any thread: calls are serialized, so an `abort` on disconnect never
    closes the descriptor under a running `write`.
    """

    def __init__(
        self,
        store: Layout,
        bucket: str,
        parts: tuple[str, ...],
        bucket_fd: int,
        *,
        limits: Limits = NONE,
        md5: bool = False,
        created: datetime | None = None,
    ) -> None:
        self._store = store
        self._limits = limits
        self._bucket = bucket
        self._parts = parts
        self._created = created  # when the file at the key was first stored, as begin saw it
        self._placing: tuple[int, FileRecord, Precondition | None] | None = None  # set by commit
        self._lock = threading.Lock()
        self._hash = hashlib.sha256()
        self._md5 = hashlib.md5() if md5 else None
        self._copied: FileRecord | None = None  # the source of a copy: its digests are kept
        self.size = 0
        self._written_back = 0  # bytes the kernel was asked to start writing to disk
        self._temp: Path | None = store.tmp / f"{uuid.uuid4().hex}.part"
        self._fd: int | None = store.open_temp(self._temp)
        # Held open for the whole upload: the commit goes into this very bucket or nowhere,
        # and its inode cannot be reused by a bucket recreated under the same name meanwhile.
        self._bucket_fd: int | None = bucket_fd

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append data; raise InsufficientStorage when the disk is full."""
        with self._lock:
            fd = self._live_fd()
            self._hash.update(data)
            if self._md5 is not None:
                self._md5.update(data)
            size = memoryview(data).nbytes
            self._limits.check_size(self.size + size)
            if self.size // SPACE_CHECK_EVERY != (self.size + size) // SPACE_CHECK_EVERY:
                self._store.check_space(0)  # keep the reserve for uploads of unknown length too
            with os_errors("the upload"):
                write_all(fd, data)
            self.size += size
            if self._store.fsync:
                # Overlap the disk writes with the transfer instead of paying them all at commit.
                self._written_back = fsops.writeback_due(fd, self._written_back, self.size, WRITEBACK_EVERY)

    def copy_from(self, reader: BlobReader) -> None:
        """Fill the upload with a stored file, in the kernel where it can; its sha256 is kept."""
        with self._lock, os_errors("the copy"):
            fd = self._live_fd()
            left = reader.record.size
            while left > 0:
                done = os.copy_file_range(reader.fileno(), fd, left, reader.offset)
                if done == 0:
                    raise OSError(errno.EIO, "the source file ended early")
                reader.offset += done
                left -= done
            self.size = reader.record.size
            self._copied = reader.record

    def sha256(self) -> str:
        """Hex SHA-256 of the bytes so far."""
        with self._lock:
            return self._copied.sha256 if self._copied is not None else self._hash.hexdigest()

    def commit(
        self,
        *,
        content_type: str,
        name: str,
        metadata: Mapping[str, str] | None = None,
        precondition: Precondition | None = None,
    ) -> FileRecord:
        """Write the metadata, fsync, rename into place, fsync the folder; return the record.

        Raises BucketNotFound if the bucket was deleted since the upload began, Conflict if a
        file or folder is in the way, PreconditionFailed when `precondition` says so,
        InsufficientStorage when the disk is full. Either way the temp file is gone afterwards.
        """
        with self._lock:
            fd = self._live_fd()
            try:
                self._limits.check(self.size, content_type)
                return self._commit(fd, self._record(content_type, name, metadata), precondition)
            finally:
                self._discard()

    def abort(self) -> None:
        """Discard the upload; safe at any time and more than once."""
        with self._lock:
            self._discard()

    def _live_fd(self) -> int:
        if self._fd is None:
            raise StorageError("the upload was aborted")
        return self._fd

    def _record(self, content_type: str, name: str, metadata: Mapping[str, str] | None) -> FileRecord:
        assert self._bucket_fd is not None
        copied, when = self._copied, now()
        md5 = self._md5.hexdigest() if self._md5 is not None else None
        return FileRecord(
            bucket=self._bucket,
            path="/".join(self._parts),
            name=name,
            size=self.size,
            content_type=content_type,
            sha256=copied.sha256 if copied is not None else self._hash.hexdigest(),
            md5=copied.md5 if copied is not None else md5,
            metadata=dict(metadata or {}),
            created_at=self._created or when,
            updated_at=when,
        )

    def _commit(self, fd: int, record: FileRecord, precondition: Precondition | None) -> FileRecord:
        store, bucket_fd = self._store, self._bucket_fd
        assert bucket_fd is not None
        # Metadata and bytes are made durable here, in this thread, outside every lock (the
        # kernel groups concurrent fsyncs); the rename and the folder's fsync are shared with the
        # uploads committing at the same time (fs/commit.py).
        with os_errors("the upload"):
            os.setxattr(fd, fsops.FILE_XATTR, fsops.file_meta(record))
            if store.fsync:
                os.fsync(fd)
        self._placing = (fd, record, precondition)
        return store.committer.commit(self._bucket, bucket_fd, self)

    @property
    def parts(self) -> tuple[str, ...]:
        return self._parts

    @property
    def pending(self) -> bool:
        return self._temp is not None

    def place(self, parent: int) -> tuple[FileRecord, int, int]:
        """Check the key's current state and rename into place; only with the bucket's mutation
        lock held (fs/commit.py calls it). Returns the record and the counters' changes."""
        assert self._placing is not None
        fd, record, precondition = self._placing
        leaf = self._parts[-1]
        current = fsops.current(parent, leaf)
        if current.folder:
            raise Conflict("a folder stands where the key needs a file")
        if precondition is not None:
            precondition(current.record)
        created = current.record.created_at if current.record is not None else record.updated_at
        if record.created_at != created:
            # A racing writer created the key since begin: take its creation date. No fsync here,
            # under the lock: the xattr is journaled metadata, made durable by the folder's fsync
            # after the rename (the journal commits in order); a crash before it leaves the
            # first xattr, as valid, with the upload's own date.
            record = record.model_copy(update={"created_at": created})
            os.setxattr(fd, fsops.FILE_XATTR, fsops.file_meta(record))
        assert self._temp is not None
        if current.present:
            os.replace(self._temp, leaf, dst_dir_fd=parent)
        else:
            fsops.rename_noreplace(self._temp, parent, leaf)
        self._temp = None
        return record, 0 if current.counted else 1, record.size - current.size

    def _discard(self) -> None:
        for attr in ("_fd", "_bucket_fd"):
            fd = getattr(self, attr)
            setattr(self, attr, None)
            if fd is not None:
                os.close(fd)
        temp, self._temp = self._temp, None
        if temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def adopt(self, source: Path, size: int, sha256: str, md5: str | None) -> None:
        """Make the file at `source` (in the store's filesystem, complete and written by the
        caller, who leaves it unchanged) this upload's bytes instead of copying them in: a hard
        link to it replaces the empty temp file, and `size`, `sha256` and `md5` are taken as its
        own, as a copy's are. `source` itself stays (a failed commit leaves it as it was)."""
        with self._lock, os_errors("the upload"):
            fd = self._live_fd()
            if self.size:
                raise StorageError("the upload already has bytes")
            temp = self._store.tmp / f"{uuid.uuid4().hex}.part"
            os.link(source, temp)
            try:
                linked = os.open(temp, os.O_RDONLY | os.O_CLOEXEC)
                fcntl.flock(linked, fcntl.LOCK_EX)  # the sweep keeps off it, as off every temp file
            except BaseException:
                os.unlink(temp)
                raise
            old, self._temp, self._fd = self._temp, temp, linked
            os.close(fd)
            if old is not None:
                os.unlink(old)
            self.size = size
            self._copied = FileRecord(
                bucket=self._bucket,
                path="/".join(self._parts),
                name="",
                size=size,
                content_type="application/octet-stream",
                sha256=sha256,
                md5=md5,
                created_at=now(),
                updated_at=now(),
            )
