"""Where the filesystem store keeps things under its root, and its locks.

Locks (all flock, so they hold across worker processes and die with their holder):
- bucket folder, shared: held by anything that changes files in the bucket; exclusive: held
  while the bucket is deleted or its metadata updated.
- `.storage-server/locks/<bucket>.lock`, exclusive: serializes the changes of one bucket's
  files (rename or unlink, precondition check, file and byte counters), for milliseconds.
- temp files and worker markers: held for their lifetime, so sweeps can tell the dead.
- `.storage-server/scrub.lock`, exclusive and non-blocking: one scrub at a time (fs/integrity.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from ..store.errors import BucketNotFound, InsufficientStorage, Unavailable
from ..store.keys import validate_bucket_name
from ..store.localdisk import is_locked, open_locked
from . import ops
from .cached import CachedOpens
from .commit import Committer

INTERNAL_DIR = ".storage-server"  # a bucket name cannot start with "."


class Layout:
    """The root, its internal folders (`tmp/`, `trash/`, `locks/`, `workers/`, `damaged/`), and
    the locks."""

    def __init__(self, root: Path, *, fsync: bool = True, reserve: int = 0) -> None:
        self.root = Path(os.path.abspath(root))
        self.fsync = fsync
        self.reserve = reserve
        internal = self.root / INTERNAL_DIR
        self.tmp = internal / "tmp"
        self.trash = internal / "trash"
        self.locks = internal / "locks"
        self.workers = internal / "workers"
        self.damaged = internal / "damaged"  # the index of damaged files (fs/integrity.py)
        self.scrub_lock = internal / "scrub.lock"
        self.scrub_state = internal / "scrub.json"
        self._alive: int | None = None
        self.committer = Committer(self)  # uploads that commit together share locks and flushes
        self.cached = CachedOpens(str(self.root))  # opens of hot files from the event loop

    def prepare(self) -> None:
        """Create the root and internal folders and check that the filesystem has what the store
        needs (user xattrs, renameat2); raise Unavailable with the reason if not."""
        probe = self.tmp / f"{uuid.uuid4().hex}.probe"
        try:
            for folder in (self.tmp, self.trash, self.locks, self.workers, self.damaged):
                folder.mkdir(parents=True, exist_ok=True)
            probe.mkdir()
            os.setxattr(probe, ops.BUCKET_XATTR, b"{}")
            tmp_fd = os.open(self.tmp, ops.DIR)
            try:
                ops.rename_noreplace(probe, tmp_fd, probe.name)
            except FileExistsError:
                pass  # renameat2 works: it refused to replace the probe with itself
            finally:
                os.close(tmp_fd)
        except OSError as exc:
            raise Unavailable(
                f"the storage path {self.root} must be a writable folder on a filesystem with user "
                f"extended attributes and renameat2, such as ext4, xfs, btrfs or tmpfs ({exc.strerror})"
            ) from exc
        finally:
            with contextlib.suppress(OSError):
                probe.rmdir()

    def register_worker(self) -> None:
        """Mark this process as a live worker until it exits (or unregisters)."""
        marker = self.workers / f"{os.getpid()}-{uuid.uuid4().hex}.alive"
        self._alive = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._alive, fcntl.LOCK_EX)
        self._alive_path = marker

    def unregister_worker(self) -> None:
        if self._alive is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._alive_path)
            os.close(self._alive)
            self._alive = None

    def dead_workers(self) -> list[int]:
        """Remove the markers of workers that died without unregistering; return their PIDs."""
        dead = []
        with os.scandir(self.workers) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if not is_locked(entry.path):
                        os.unlink(entry.path)
                        dead.append(int(entry.name.split("-", 1)[0]))
        return dead

    def is_writable(self) -> bool:
        """True when a file can be created, written and removed in the storage path."""
        probe = self.tmp / f"{uuid.uuid4().hex}.health"
        try:
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except OSError:
            return False
        try:
            os.write(fd, b"ok")
            return True
        except OSError:
            return False
        finally:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(probe)

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
