"""The filesystem store's staged uploads (the store contract's `Staging`): one folder each under
`.storage-server/staged/<id>/`, with `upload.json` (bucket, key, the front door's info) and its
parts as `<number>.part` files whose record rides in an xattr, each part written to a temp file
and renamed into place once fsynced. Completing one streams the parts, in order, into an
ordinary Upload: the same commit, checks and limits as every other upload."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..store.assemble import Chunks, assemble, extend
from ..store.contract import Precondition, Upload
from ..store.errors import InvalidPart, Locked, NoSuchUpload, StorageError
from ..store.keys import validate_key
from ..store.localdisk import is_locked, open_locked, os_errors, write_all
from ..store.records import FileRecord, PartRecord, StagedRecord, now
from .layout import Layout

PART_XATTR = "user.storage_server.part"
MAX_PART = 10_000
READ = 1024 * 1024
_ID = re.compile(r"[0-9a-f]{32}")
_PART = re.compile(r"(\d{5})\.part")


class PartWriter:
    """One part being written to a temp file in its upload's folder; see contract.PartUpload."""

    def __init__(self, folder: Path, number: int, lock_fd: int | None, fsync: bool) -> None:
        self._folder = folder
        self._number = number
        self._lock_fd = lock_fd  # held while an exclusive part is written
        self._fsync = fsync
        self._mutex = threading.Lock()
        self._md5 = hashlib.md5()
        self._sha256 = hashlib.sha256()
        self._size = 0
        self._temp: Path | None = folder / f"tmp-{uuid.uuid4().hex}"
        try:
            with os_errors("the part"):
                self._fd: int | None = open_locked(self._temp)
        except FileNotFoundError:
            self._release()
            raise NoSuchUpload(folder.name) from None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with self._mutex:
            if self._fd is None:
                raise StorageError("the part was aborted")
            with os_errors("the part"):
                write_all(self._fd, data)
            self._md5.update(data)
            self._sha256.update(data)
            self._size += memoryview(data).nbytes

    def commit(self) -> PartRecord:
        with self._mutex:
            if self._fd is None or self._temp is None:
                raise StorageError("the part was aborted")
            record = PartRecord(
                number=self._number,
                size=self._size,
                md5=self._md5.hexdigest(),
                sha256=self._sha256.hexdigest(),
                created_at=now(),
            )
            try:
                with os_errors("the part"):
                    os.setxattr(self._fd, PART_XATTR, record.model_dump_json().encode())
                    if self._fsync:
                        os.fsync(self._fd)
                    os.replace(self._temp, self._folder / f"{self._number:05d}.part")
                    self._temp = None
                    if self._fsync:
                        dir_fd = os.open(self._folder, os.O_RDONLY | os.O_DIRECTORY)
                        try:
                            os.fsync(dir_fd)
                        finally:
                            os.close(dir_fd)
            except FileNotFoundError:
                raise NoSuchUpload(self._folder.name) from None  # aborted meanwhile
            finally:
                self._discard()
            return record

    def abort(self) -> None:
        with self._mutex:
            self._discard()

    def _discard(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
        temp, self._temp = self._temp, None
        if temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
        self._release()

    def _release(self) -> None:
        lock, self._lock_fd = self._lock_fd, None
        if lock is not None:
            os.close(lock)


class Staging(Layout):
    """Staged uploads under the layout's `staged/` folder (mixed into BlobStore)."""

    staged_expiry = 24 * 3600.0

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
        raise NotImplementedError  # the store's own (BlobStore)

    @property
    def staged(self) -> Path:
        return self.root / ".storage-server" / "staged"

    def begin_staged(self, bucket: str, key: str, *, info: Mapping[str, str] | None = None) -> StagedRecord:
        """See contract.Staging."""
        validate_key(key)
        os.close(self.open_bucket(bucket))  # InvalidName, BucketNotFound
        record = StagedRecord(
            id=uuid.uuid4().hex, bucket=bucket, key=key, info=dict(info or {}), created_at=now()
        )
        temp = self.tmp / f"{record.id}.staged"
        with os_errors("the staged upload"):
            self.staged.mkdir(exist_ok=True)
            temp.mkdir()
            (temp / "upload.json").write_text(record.model_dump_json(exclude={"parts"}))
            if self.fsync:
                _fsync_path(temp / "upload.json")
            os.rename(temp, self.staged / record.id)
            if self.fsync:
                _fsync_path(self.staged)
        return record

    def get_staged(self, upload_id: str) -> StagedRecord:
        folder = self._folder(upload_id)
        try:
            record = StagedRecord.model_validate_json((folder / "upload.json").read_bytes())
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            raise NoSuchUpload(upload_id) from None
        parts = []
        for name in sorted(names):
            if _PART.fullmatch(name):
                with contextlib.suppress(OSError, ValueError):
                    parts.append(PartRecord.model_validate_json(os.getxattr(folder / name, PART_XATTR)))
        return record.model_copy(update={"parts": parts})

    def list_staged(self, bucket: str) -> list[StagedRecord]:
        os.close(self.open_bucket(bucket))
        found = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self.staged) as entries:
            for entry in entries:
                with contextlib.suppress(NoSuchUpload):
                    record = self.get_staged(entry.name)
                    if record.bucket == bucket:
                        found.append(record)
        return sorted(found, key=lambda r: r.created_at)

    def begin_part(
        self, upload_id: str, number: int, *, exclusive: bool = False, append: bool = False
    ) -> PartWriter:
        if not 1 <= number <= MAX_PART:
            raise InvalidPart(f"a part number is 1 to {MAX_PART}")
        folder = self._folder(upload_id)
        lock_fd = None
        if exclusive:
            try:
                lock_fd = os.open(folder / "upload.json", os.O_RDONLY | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                raise NoSuchUpload(upload_id) from None
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(lock_fd)
                raise Locked() from None
        writer = PartWriter(folder, number, lock_fd, self.fsync)
        if append:
            try:
                chunks = self._read_part(upload_id, number)
            except InvalidPart:
                return writer  # nothing stored under that number yet
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
        self._remove(upload_id)
        return done

    def _read_part(self, upload_id: str, number: int) -> Chunks:
        try:
            fd = os.open(self._folder(upload_id) / f"{number:05d}.part", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise InvalidPart(f"part {number} is not there (replaced or aborted meanwhile)") from None
        return _chunks(fd)

    def abort_staged(self, upload_id: str) -> None:
        self._folder(upload_id)
        if not (self.staged / upload_id).is_dir():
            raise NoSuchUpload(upload_id)
        self._remove(upload_id)

    def sweep_staged(self, expiry: float | None = None) -> int:
        """Remove staged uploads untouched for `expiry` seconds (default the store's) that no
        part is being written to; return how many."""
        cutoff = time.time() - (self.staged_expiry if expiry is None else expiry)
        removed = 0
        with contextlib.suppress(FileNotFoundError), os.scandir(self.staged) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    newest = max(
                        [entry.stat(follow_symlinks=False).st_mtime]
                        + [c.stat(follow_symlinks=False).st_mtime for c in os.scandir(entry.path)]
                    )
                    busy = any(is_locked(c.path) for c in os.scandir(entry.path) if c.name.startswith("tmp-"))
                    if newest < cutoff and not busy:
                        self._remove(entry.name)
                        removed += 1
        return removed

    def _folder(self, upload_id: str) -> Path:
        if not _ID.fullmatch(upload_id):
            raise NoSuchUpload(upload_id)
        return self.staged / upload_id

    def _remove(self, upload_id: str) -> None:
        trashed = self.trash / f"staged-{upload_id}-{uuid.uuid4().hex}"
        try:
            os.rename(self.staged / upload_id, trashed)
        except FileNotFoundError:
            raise NoSuchUpload(upload_id) from None
        shutil.rmtree(trashed, ignore_errors=True)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _chunks(fd: int) -> Chunks:
    """The bytes of an open part file, READ at a time; the file is closed at the end."""
    try:
        while chunk := os.read(fd, READ):
            yield chunk
    finally:
        os.close(fd)
