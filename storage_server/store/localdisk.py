"""Local files that every backend keeps (the filesystem store's temp files, the S3 store's
spool): appends, flock probes, sweeps of leftovers, and OS errors turned into store errors."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import Conflict, InsufficientStorage


@contextlib.contextmanager
def os_errors(what: str) -> Iterator[None]:
    """Turn the OSErrors a client can act on into StorageErrors; let any other one through."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage("not enough free space to store the file") from exc
        if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST, errno.ELOOP):
            raise Conflict(f"{what} conflicts with an existing file or folder") from exc
        raise


def open_locked(path: Path, flags: int = os.O_WRONLY, mode: int = 0o600) -> int:
    """Create a new file and hold an flock on it for its lifetime: sweep_folder keeps off it."""
    fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def write_all(fd: int, data: bytes | bytearray | memoryview, offset: int | None = None) -> int:
    """Write every byte of `data` (at `offset`, else at the file position); return how many."""
    view = memoryview(data)
    size = view.nbytes
    while view:
        done = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset + size - view.nbytes)
        view = view[done:]
    return size


def is_locked(path: str) -> bool:
    """Whether some live process holds an flock on the file or folder at `path`."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def sweep_folder(folder: Path, grace: float, remove_dir: bool = False) -> int:
    """Remove the entries of `folder` that no live process holds an flock on and that are older
    than `grace` seconds (so new that their creator may not have locked them yet); return how many."""
    removed, cutoff = 0, time.time() - grace
    with os.scandir(folder) as entries:
        for entry in entries:
            with contextlib.suppress(FileNotFoundError):
                if entry.stat(follow_symlinks=False).st_mtime > cutoff or is_locked(entry.path):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if not remove_dir:
                        continue
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                removed += 1
    return removed
