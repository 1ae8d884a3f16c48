"""The filesystem store's primitives: descriptor-relative walks that never follow a symlink,
renameat2, and the metadata xattrs of files and buckets."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import mimetypes
import os
import posixpath
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..store.errors import Conflict, InvalidKey
from ..store.limits import NONE, Limits
from ..store.records import BucketRecord, FileRecord

BUCKET_XATTR = "user.storage_server.bucket"
STATS_XATTR = "user.storage_server.stats"
FILE_XATTR = "user.storage_server.file"
DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# What a key's path meets when no file is there: nothing, a folder, a file on the way, a link.
ABSENT = (errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.ELOOP)

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_FILE_META_FIELDS = {
    "name",
    "content_type",
    "sha256",
    "md5",
    "metadata",
    "created_at",
    "updated_at",
    "damaged",
}


def _load_renameat2() -> Any:
    fn = ctypes.CDLL(None, use_errno=True).renameat2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


_renameat2 = _load_renameat2()
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Any:
    fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return fn


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing these bytes of `fd` to disk now, without waiting
    (sync_file_range, SYNC_FILE_RANGE_WRITE): the fsync at the end of an upload then finds
    little left to do. Advice only: durability still comes from that fsync."""
    _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


def writeback_due(fd: int, done: int, end: int, every: int) -> int:
    """Start writeback of the bytes of `fd` from `done` to `end` once there are `every` of them
    (start_writeback); return the new mark of bytes handed to the kernel."""
    if end - done >= every:
        start_writeback(fd, done, end - done)
        return end
    return done


def rename_noreplace(src: Path | str, dst_dir_fd: int, dst: str) -> None:
    """renameat2(RENAME_NOREPLACE): move src to dst unless dst exists (then FileExistsError)."""
    if _renameat2(_AT_FDCWD, os.fsencode(src), dst_dir_fd, os.fsencode(dst), _RENAME_NOREPLACE):
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), dst)


def second_wall(parts: tuple[str, ...]) -> None:
    """Refuse segments that would leave the bucket, whatever validate_key let through."""
    joined = "/" + "/".join(parts)
    if parts and posixpath.normpath(joined) != joined:
        raise InvalidKey("the key leaves its bucket")


def open_parent(bucket_fd: int, parts: tuple[str, ...], *, create: bool, fsync: bool = False) -> int:
    """Open the folder holding the key's last segment without following any symlink.

    With `create`, missing folders are made inside the bucket (never the bucket itself), and
    with `fsync` each new entry is made durable. Raises OSError (ENOENT, ENOTDIR, ELOOP) when a
    folder is missing or is something else.
    """
    second_wall(parts)
    fd = os.dup(bucket_fd)
    try:
        for part in parts[:-1]:
            if create:
                try:
                    os.mkdir(part, dir_fd=fd)
                    if fsync:
                        os.fsync(fd)
                except FileExistsError:
                    pass
            child = os.open(part, DIR, dir_fd=fd)
            os.close(fd)
            fd = child
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_chain(bucket_fd: int, folders: tuple[str, ...]) -> list[int]:
    """Open the bucket and each of `folders` below it, without following symlinks; the caller
    closes them. Raises OSError (ENOENT, ENOTDIR, ELOOP) when one is missing."""
    second_wall(folders)
    chain = [os.dup(bucket_fd)]
    try:
        for part in folders:
            chain.append(os.open(part, DIR, dir_fd=chain[-1]))
        return chain
    except BaseException:
        for fd in chain:
            os.close(fd)
        raise


def prune(chain: list[int], parts: tuple[str, ...]) -> None:
    """Remove the folders of `parts` left empty, deepest first; `chain` holds them open.

    An upload racing into one of them retries its commit (see staging.Upload).
    """
    for depth in range(len(chain) - 1, 0, -1):
        try:
            os.rmdir(parts[depth - 1], dir_fd=chain[depth - 1])
        except OSError:
            return


class Current:
    """What stands at a key now: nothing, a file (with its record), a folder, or something else."""

    def __init__(self, present: bool, record: FileRecord | None = None, folder: bool = False) -> None:
        self.present = present
        self.record = record
        self.folder = folder

    @property
    def counted(self) -> bool:
        """Whether the bucket's counters include it (regular files only)."""
        return self.record is not None

    @property
    def size(self) -> int:
        return self.record.size if self.record is not None else 0


def current(parent: int, name: str) -> Current:
    """What stands at `name` in the open folder `parent` right now."""
    try:
        fd = os.open(name, FILE, dir_fd=parent)
    except FileNotFoundError:
        return Current(False)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Current(True)  # a symlink: replaced, never followed
        raise
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            return Current(True, folder=True)
        if not stat.S_ISREG(info.st_mode):
            return Current(True)
        return Current(True, file_record(fd, info, "", name))
    finally:
        os.close(fd)


def check_way(bucket_fd: int, parts: tuple[str, ...]) -> FileRecord | None:
    """The record now at the key, if any; raise Conflict when a file or folder blocks it."""
    try:
        parent = open_parent(bucket_fd, parts, create=False)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise Conflict("a file stands where the key needs a folder") from exc
    try:
        found = current(parent, parts[-1])
    finally:
        os.close(parent)
    if found.folder:
        raise Conflict("a folder stands where the key needs a file")
    return found.record


def record_at(dir_fd: int, name: str, bucket: str, key: str) -> FileRecord | None:
    """The record of the regular file `name` in `dir_fd`, or None if it is gone or not a file."""
    try:
        fd = os.open(name, FILE, dir_fd=dir_fd)
    except OSError:
        return None  # deleted since the folder was read
    try:
        info = os.fstat(fd)
        return file_record(fd, info, bucket, key) if stat.S_ISREG(info.st_mode) else None
    finally:
        os.close(fd)


def file_record(fd: int, info: os.stat_result, bucket: str, key: str) -> FileRecord:
    """The record of an open file: its xattr metadata, or what can be said of a foreign file."""
    try:
        meta = json.loads(os.getxattr(fd, FILE_XATTR))
    except (OSError, ValueError):
        meta = _describe_foreign(fd, info, key.rsplit("/", 1)[-1])
    return FileRecord.model_validate({**meta, "bucket": bucket, "path": key, "size": info.st_size})


def _describe_foreign(fd: int, info: os.stat_result, name: str) -> dict[str, Any]:
    """Metadata for a file placed by hand: hashed once, then cached in its xattr if allowed."""
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(fd, 1024 * 1024, offset):
        digest.update(chunk)
        offset += len(chunk)
    when = datetime.fromtimestamp(info.st_mtime, UTC).isoformat()
    meta = {
        "name": name,
        "content_type": mimetypes.guess_type(name)[0] or "application/octet-stream",
        "sha256": digest.hexdigest(),
        "created_at": when,
        "updated_at": when,
    }
    with contextlib.suppress(OSError):
        os.setxattr(fd, FILE_XATTR, json.dumps(meta).encode())
    return meta


def file_meta(record: FileRecord) -> bytes:
    return record.model_dump_json(include=_FILE_META_FIELDS, exclude_defaults=True).encode()


def bucket_meta(bucket: BucketRecord) -> bytes:
    fields = {"public", "description", "file_size_limit", "allowed_mime_types", "created_at", "updated_at"}
    return bucket.model_dump_json(include=fields).encode()


def read_limits(fd: int) -> Limits:
    """The limits of an open bucket folder (none for a folder made by hand)."""
    try:
        meta = json.loads(os.getxattr(fd, BUCKET_XATTR))
    except (OSError, ValueError):
        return NONE
    types = meta.get("allowed_mime_types")
    return Limits(meta.get("file_size_limit"), tuple(types) if types is not None else None)


def read_bucket(fd: int, name: str) -> BucketRecord:
    """The record of an open bucket folder, counters included."""
    try:
        meta = json.loads(os.getxattr(fd, BUCKET_XATTR))
    except OSError:
        # A folder made by hand: a private bucket dated by the folder itself.
        when = datetime.fromtimestamp(os.fstat(fd).st_mtime, UTC)
        meta = {"created_at": when, "updated_at": when}
    count, size = stats(fd)
    return BucketRecord.model_validate({**meta, "name": name, "file_count": count, "total_size": size})


def stats(bucket_fd: int) -> tuple[int, int]:
    """The bucket's (file count, total bytes); a bucket never counted has none."""
    try:
        count, size = os.getxattr(bucket_fd, STATS_XATTR).split()
        return int(count), int(size)
    except (OSError, ValueError):
        return 0, 0


def count(bucket_fd: int, files: int, size: int) -> None:
    """Add to the bucket's file and byte counters; only with its mutation lock held."""
    old_files, old_size = stats(bucket_fd)
    set_stats(bucket_fd, max(old_files + files, 0), max(old_size + size, 0))


def set_stats(bucket_fd: int, files: int, size: int) -> None:
    """Replace the bucket's counters; only with its mutation lock held."""
    os.setxattr(bucket_fd, STATS_XATTR, f"{files} {size}".encode())
