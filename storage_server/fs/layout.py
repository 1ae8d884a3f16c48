"""Where the filesystem store keeps things under its root, and its locks.

Locks (all flock, so they hold across worker processes and die with their holder):
- bucket folder, shared: held by anything that changes files in the bucket; exclusive: held
  while the bucket is deleted or its metadata updated.
- `.storage-server/locks/<bucket>.lock`, exclusive: serializes the changes of one bucket's
  files (rename or unlink, precondition check, file and byte counters), for milliseconds.
- temp files and worker markers: held for their lifetime, so sweeps can tell the dead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ..store.errors import BucketNotFound, InsufficientStorage, Unavailable
from ..store.keys import validate_bucket_name
from ..store.localdisk import open_locked
from . import ops

INTERNAL_DIR = ".storage-server"  # a bucket name cannot start with "."


class Layout:
    """The root, its internal folders (`tmp/`, `trash/`, `locks/`, `workers/`), and the locks."""

    def __init__(self, root: Path, *, fsync: bool = True, reserve: int = 0) -> None:
        self.root = Path(os.path.abspath(root))
        self.fsync = fsync
        self.reserve = reserve
        internal = self.root / INTERNAL_DIR
        self.tmp = internal / "tmp"
        self.trash = internal / "trash"
        self.locks = internal / "locks"
        self.workers = internal / "workers"

    def free_bytes(self) -> int:
        """Bytes an unprivileged writer can still store under the root."""
        info = os.statvfs(self.root)
        return info.f_bavail * info.f_frsize

    def check_space(self, size: int) -> None:
        """Raise InsufficientStorage unless `size` more bytes leave the reserve untouched."""
        if self.free_bytes() - size < self.reserve:
            raise InsufficientStorage(f"not enough free space for {size} more bytes")

    def open_temp(self, path: Path) -> int:
        """A new temp file, flock'ed for its lifetime (the sweep keeps off it)."""
        return open_locked(path, mode=0o644)  # it becomes the stored file

    @contextlib.contextmanager
    def root_fd(self) -> Iterator[int]:
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise Unavailable("the storage path is unavailable") from exc
        try:
            yield fd
        finally:
            os.close(fd)

    def bucket_path(self, name: str) -> str:
        return f"{self.root}/{validate_bucket_name(name)}"

    def open_bucket(self, name: str) -> int:
        """Open the bucket's folder by its path (one syscall; the bucket itself is never a
        followed symlink); raise InvalidName, BucketNotFound, or Unavailable without a root."""
        try:
            return os.open(self.bucket_path(name), ops.DIR)
        except OSError as exc:
            if exc.errno not in ops.ABSENT:
                raise
            if not os.path.isdir(self.root):
                raise Unavailable("the storage path is unavailable") from exc
            raise BucketNotFound(name) from None

    @contextlib.contextmanager
    def locked_bucket(self, name: str, *, exclusive: bool) -> Iterator[int]:
        """Open and flock the bucket folder, checking it is still the one under its name."""
        fd = self.open_bucket(name)
        try:
            with self.locking(fd, name, exclusive=exclusive):
                yield fd
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def locking(self, fd: int, name: str, *, exclusive: bool) -> Iterator[None]:
        """flock an open bucket folder; raise BucketNotFound unless it still stands under `name`.

        delete_bucket renames under the exclusive lock, so once the check passes with any lock
        held, the bucket stays put until the lock is released.
        """
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            try:
                now = os.stat(self.bucket_path(name), follow_symlinks=False)
            except FileNotFoundError:
                raise BucketNotFound(name) from None
            info = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                raise BucketNotFound(name)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def mutating(self, bucket: str) -> Iterator[None]:
        """The bucket's mutation lock: one rename or unlink (and its counter update) at a time."""
        fd = os.open(self.locks / f"{bucket}.lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
