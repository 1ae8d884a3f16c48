"""The filesystem store's staged parts: `<number>.part` files in their upload's folder, each with
its record in an xattr. A new part is written to a temp file, hashed as it comes, and renamed
into place once fsynced. A part that grows (tus chunks) is appended to where it is, its record
moved past the new bytes only once they are fsynced (bytes past a part's record, an append cut
short by a crash, are never part of it), and hashed behind the writes (store.assemble.Trailing):
its record's digests are empty until the completion settles them."""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from pathlib import Path

from ..store.assemble import RUNNING, Chunks, Digests, ReadAt, Trailing
from ..store.errors import InvalidPart, NoSuchUpload, StorageError
from ..store.localdisk import open_locked, os_errors, write_all
from ..store.records import PartRecord, now
from . import ops as fsops

PART_XATTR = "user.storage_server.part"
TOKEN_XATTR = "user.storage_server.part-token"  # names one part file for its life: RUNNING's key
READ = 1024 * 1024
WRITEBACK_EVERY = 1024 * 1024  # bytes written between two requests to start writeback


def part_path(folder: Path, number: int) -> Path:
    return folder / f"{number:05d}.part"


def read_record(fd: int) -> PartRecord:
    """The record of an open part file; OSError (ENODATA) when it has none."""
    return PartRecord.model_validate_json(os.getxattr(fd, PART_XATTR))


def chunks(fd: int, size: int) -> Chunks:
    """The first `size` bytes of an open part file, READ at a time; the file is closed at the end."""
    try:
        offset = 0
        while offset < size:
            chunk = os.pread(fd, min(READ, size - offset), offset)
            if not chunk:
                raise StorageError("a staged part is shorter than its record")
            offset += len(chunk)
            yield chunk
    finally:
        os.close(fd)


def open_part(folder: Path, number: int) -> tuple[int, PartRecord]:
    """Open a stored part for reading, with its record; raise InvalidPart when it is not there."""
    try:
        fd = os.open(part_path(folder, number), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidPart(f"part {number} is not there (replaced or aborted meanwhile)") from None
    try:
        return fd, read_record(fd)
    except OSError:
        os.close(fd)
        raise InvalidPart(f"part {number} is not there (replaced or aborted meanwhile)") from None


def reader(path: Path, token: str) -> ReadAt:
    """Reads of the part file at `path` for as long as it is the one named `token` (InvalidPart
    once it was replaced or removed): a Trailing keeps no descriptor open between its reads."""

    def read(offset: int, buffer: memoryview) -> int:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise InvalidPart("the part was removed while it was being hashed") from None
        try:
            if os.getxattr(fd, TOKEN_XATTR).decode() != token:
                raise InvalidPart("the part was replaced while it was being hashed")
            return os.preadv(fd, [buffer], offset)
        except OSError:
            raise InvalidPart("the part was replaced while it was being hashed") from None
        finally:
            os.close(fd)

    return read


def digests_of(path: Path, fd: int, record: PartRecord) -> tuple[str, str]:
    """The SHA-256 and MD5 of a stored part: its record's, else its Trailing's in this process
    (once it has caught up), else the part hashed now (another process grew it)."""
    if record.sha256:
        return record.sha256, record.md5
    try:
        token = os.getxattr(fd, TOKEN_XATTR).decode()
    except OSError:
        token = ""
    trailing = RUNNING.get(token)
    digests = None
    if trailing is not None:
        with contextlib.suppress(InvalidPart):
            digests = trailing.settle(record.size, reader(path, token))
    if digests is None:
        digests = Digests()
        for chunk in chunks(os.dup(fd), record.size):
            digests.update(chunk)
    return digests.sha256(), digests.md5()


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PartWriter:
    """A new part: a temp file in its upload's folder, hashed as it is written and renamed into
    place when committed (replacing an earlier part of that number at once); see
    contract.PartUpload. An exclusive one (a part that may grow) leaves its digests to RUNNING."""

    def __init__(self, folder: Path, number: int, lock_fd: int | None, fsync: bool) -> None:
        self._folder = folder
        self._number = number
        self._lock_fd = lock_fd  # held while an exclusive part is written
        self._fsync = fsync
        self._mutex = threading.Lock()
        self._digests = Digests()
        self._written_back = 0
        self._fd: int | None = None
        self._temp: Path | None = folder / f"tmp-{uuid.uuid4().hex}"
        try:
            with os_errors("the part"):
                self._fd = open_locked(self._temp, mode=0o644)  # it may become the stored file
        except BaseException as exc:
            self._temp = None
            self._discard()
            if isinstance(exc, FileNotFoundError):
                raise NoSuchUpload(folder.name) from None
            raise

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with self._mutex:
            fd, offset = self._fd, self._digests.size
            if fd is None:
                raise StorageError("the part was aborted")
            with os_errors("the part"):
                self._digests.update(data, lambda: write_all(fd, data, offset))
            self._written_back = _writeback(fd, self._written_back, self._digests.size, self._fsync)

    def commit(self) -> PartRecord:
        with self._mutex:
            if self._fd is None or self._temp is None:
                raise StorageError("the part was aborted")
            digests = self._digests
            record = PartRecord(
                number=self._number,
                size=digests.size,
                md5=digests.md5(),
                sha256=digests.sha256(),
                created_at=now(),
            )
            token = uuid.uuid4().hex
            try:
                with os_errors("the part"):
                    os.setxattr(self._fd, PART_XATTR, record.model_dump_json().encode())
                    os.setxattr(self._fd, TOKEN_XATTR, token.encode())
                    if self._fsync:
                        os.fsync(self._fd)
                    os.replace(self._temp, part_path(self._folder, self._number))
                    self._temp = None
                    if self._fsync:
                        _fsync_folder(self._folder)
            except FileNotFoundError:
                raise NoSuchUpload(self._folder.name) from None  # aborted meanwhile
            finally:
                exclusive = self._lock_fd is not None
                self._discard()
            if exclusive:
                RUNNING.follow(token, digests)
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
        lock, self._lock_fd = self._lock_fd, None
        if lock is not None:
            os.close(lock)


class AppendWriter:
    """A stored part grown where it is: bytes go after its recorded size, and the record moves
    past them when committed, once they are fsynced; they are hashed after that, by the part's
    Trailing. The caller holds the upload's exclusive lock, so no one else writes to the part
    meanwhile; see contract.PartUpload."""

    def __init__(
        self,
        folder: Path,
        number: int,
        fd: int,
        token: str,
        start: int,
        trailing: Trailing,
        lock_fd: int,
        fsync: bool,
    ) -> None:
        self._folder = folder
        self._number = number
        self._fd: int | None = fd
        self._token = token
        self._start = self._size = self._written_back = start
        self._trailing = trailing
        self._lock_fd: int | None = lock_fd
        self._fsync = fsync
        self._mutex = threading.Lock()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with self._mutex:
            fd = self._fd
            if fd is None:
                raise StorageError("the part was aborted")
            with os_errors("the part"):
                self._size += write_all(fd, data, self._size)
            self._written_back = _writeback(fd, self._written_back, self._size, self._fsync)

    def commit(self) -> PartRecord:
        with self._mutex:
            fd = self._fd
            if fd is None:
                raise StorageError("the part was aborted")
            record = PartRecord(number=self._number, size=self._size, md5="", sha256="", created_at=now())
            path = part_path(self._folder, self._number)
            try:
                with os_errors("the part"):
                    if self._fsync:
                        os.fdatasync(fd)  # the bytes first: a record never covers bytes not on disk
                    os.setxattr(fd, PART_XATTR, record.model_dump_json().encode())
                    if self._fsync:
                        os.fsync(fd)
                    stored, mine = os.stat(path), os.fstat(fd)
                    if (stored.st_dev, stored.st_ino) != (mine.st_dev, mine.st_ino):
                        raise FileNotFoundError
                    self._start = self._size  # committed: nothing to drop
            except FileNotFoundError:
                raise NoSuchUpload(self._folder.name) from None  # aborted meanwhile
            finally:
                self._discard()
            self._trailing.advance(record.size, reader(path, self._token))
            return record

    def abort(self) -> None:
        with self._mutex:
            self._discard()

    def _discard(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            if self._size != self._start:
                # Not committed: drop the bytes past the record (tidiness only: they are ignored).
                with contextlib.suppress(OSError):
                    if read_record(fd).size == self._start:
                        os.ftruncate(fd, self._start)
            os.close(fd)
        lock, self._lock_fd = self._lock_fd, None
        if lock is not None:
            os.close(lock)


def _writeback(fd: int, done: int, end: int, fsync: bool) -> int:
    """Overlap a part's disk writes with the transfer instead of paying them at commit."""
    return fsops.writeback_due(fd, done, end, WRITEBACK_EVERY) if fsync else done


def grow(folder: Path, number: int, lock_fd: int, fsync: bool) -> AppendWriter | None:
    """An AppendWriter for part `number`, whose Trailing (this process's, or a new one that
    hashes the part from its start, once) is set going; None when there is no such part, or
    when its file is also a committed file (a completion cut short by a crash: it must not
    change), and the part is then rewritten instead. The writer owns `lock_fd` only when one is
    returned."""
    path = part_path(folder, number)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        with os_errors("the part"):
            try:
                record = read_record(fd)
            except OSError:
                os.close(fd)
                return None
            info = os.fstat(fd)
            if info.st_nlink != 1:
                os.close(fd)
                return None
            try:
                token = os.getxattr(fd, TOKEN_XATTR).decode()
            except OSError:
                token = uuid.uuid4().hex
                os.setxattr(fd, TOKEN_XATTR, token.encode())
            if info.st_size > record.size:
                os.ftruncate(fd, record.size)  # the bytes of an append cut short
        trailing = RUNNING.follow(token)
        trailing.advance(record.size, reader(path, token))
        return AppendWriter(folder, number, fd, token, record.size, trailing, lock_fd, fsync)
    except BaseException:
        with contextlib.suppress(OSError):
            os.close(fd)
        raise
