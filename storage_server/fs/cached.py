"""Opens that never wait on the disk, so that a hot small file can be served from the event loop
without a trip to a worker thread: the path must be in the kernel's lookup cache (openat2 with
RESOLVE_CACHED), the record must be one this process read from the same inode at the same change
time (a record changes only with the inode's ctime: a new xattr, a rename), and the first bytes
must be in the page cache (preadv2 with RWF_NOWAIT). Anything else answers None, and the caller
opens the file the ordinary way, in a thread, which also fills the record cache.

The walk below the storage path is RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS: like the ordinary
open, it never follows a symlink and never leaves the root.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import threading
import time
from collections import OrderedDict
from typing import Any

from ..store.records import FileRecord

_SYS_OPENAT2 = 437  # the same on every architecture (a syscall number of the unified table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_RESOLVE_CACHED = 0x20
_ROOT = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# What a kernel (or a seccomp filter) without openat2, RESOLVE_CACHED or RWF_NOWAIT answers.
_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM)
RECORDS = 4096  # records kept per process
# A record is kept only once its inode's change time is this far in the past: any later change
# then gets a later change time, even where the kernel stamps times in coarse ticks.
SETTLED_NS = 100_000_000


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _load_syscall() -> Any:
    fn = ctypes.CDLL(None, use_errno=True).syscall
    fn.restype = ctypes.c_long
    return fn


_syscall = _load_syscall()


def _openat2(dir_fd: int, path: bytes, flags: int, resolve: int) -> int:
    """openat2(2); -1 when it would have to wait on the disk (EAGAIN) or finds nothing there.
    Raises OSError for any other failure (ENOSYS, EINVAL: a kernel without RESOLVE_CACHED)."""
    how = _OpenHow(flags, 0, resolve)
    fd = int(_syscall(_SYS_OPENAT2, dir_fd, path, ctypes.byref(how), ctypes.sizeof(how)))
    if fd >= 0:
        return fd
    code = ctypes.get_errno()
    if code in (errno.EAGAIN, errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EXDEV, errno.EISDIR):
        return -1
    raise OSError(code, os.strerror(code))


def _state(info: os.stat_result) -> tuple[int, int, int, int, int]:
    """What identifies one version of a file's record: its inode and its change time."""
    return (info.st_dev, info.st_ino, info.st_ctime_ns, info.st_mtime_ns, info.st_size)


class CachedOpens:
    """The records this process has read, by inode state, and the loop-side open over them."""

    def __init__(self, root: str) -> None:
        self._root = os.fsencode(root)
        self._records: OrderedDict[tuple[int, ...], FileRecord] = OrderedDict()
        self._lock = threading.Lock()  # filled from worker threads, read on the loop
        self.enabled = True  # off for good once the kernel says it cannot do this

    def remember(self, info: os.stat_result, record: FileRecord) -> None:
        """Keep the record just read from the file whose fstat is `info` (any thread)."""
        if time.time_ns() - info.st_ctime_ns < SETTLED_NS:
            return
        with self._lock:
            self._records[_state(info)] = record
            if len(self._records) > RECORDS:
                self._records.popitem(last=False)

    def open(self, bucket: str, parts: tuple[str, ...], head: int) -> tuple[int, FileRecord, bytes] | None:
        """(fd, record, its first `head` bytes) of the file at the key, without waiting on the
        disk; None when that cannot be done (the caller then opens it the ordinary way)."""
        if not self.enabled:
            return None
        try:
            return self._open(bucket, parts, head)
        except OSError as exc:
            if exc.errno in _UNSUPPORTED:
                self.enabled = False  # no openat2, RESOLVE_CACHED or RWF_NOWAIT here: never again
            return None  # anything else (out of descriptors, ...): this once, the ordinary way

    def _open(self, bucket: str, parts: tuple[str, ...], head: int) -> tuple[int, FileRecord, bytes] | None:
        root = _openat2(-100, self._root, _ROOT, _RESOLVE_CACHED)  # AT_FDCWD
        if root < 0:
            return None
        try:
            path = os.fsencode(bucket + "/" + "/".join(parts))
            resolve = _RESOLVE_CACHED | _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS
            fd = _openat2(root, path, _FILE, resolve)
        finally:
            os.close(root)
        if fd < 0:
            return None
        try:
            found = self._read(fd, bucket, "/".join(parts), head)
        except BaseException:
            os.close(fd)
            raise
        if found is None:
            os.close(fd)
            return None
        return fd, *found

    def _read(self, fd: int, bucket: str, key: str, head: int) -> tuple[FileRecord, bytes] | None:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None
        with self._lock:
            record = self._records.get(_state(info))
        if record is None or record.bucket != bucket or record.path != key:
            return None
        size = min(head, info.st_size)
        if size <= 0:
            return record, b""
        buffer = bytearray(size)
        try:
            done = os.preadv(fd, [buffer], 0, os.RWF_NOWAIT)
        except BlockingIOError:
            return None  # not all in the page cache
        if done != size:
            return None  # partly cached: the rest would have to come from the disk
        return record, bytes(buffer)
