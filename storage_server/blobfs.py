"""The filesystem store: buckets are folders under the root, files are plain files, and each
record's metadata rides in a user xattr, so it becomes visible in the same rename as the bytes.

It raises the StorageError subclasses of `errors.py` (and lets unexpected OSErrors through).

Locks (all flock, so they hold across worker processes and die with their holder):
- bucket folder, shared: held by anything that changes files in the bucket; exclusive: held
  while the bucket is deleted or its metadata updated.
- `.storage-server/locks/<bucket>.lock`, exclusive: serializes the changes of one bucket's
  files (rename or unlink, precondition check, file and byte counters), for milliseconds.
- temp files and worker markers: held for their lifetime, so sweeps can tell the dead.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import mimetypes
import os
import posixpath
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import listing
from .errors import (
    BucketNotFound,
    Conflict,
    FileNotFound,
    InsufficientStorage,
    InvalidKey,
    StorageError,
    Unavailable,
)
from .keys import is_bucket_name, validate_bucket_name, validate_key, validate_prefix
from .models import Bucket, File, Listing

INTERNAL_DIR = ".storage-server"  # a bucket name cannot start with "."
BUCKET_XATTR = "user.storage_server.bucket"
STATS_XATTR = "user.storage_server.stats"
FILE_XATTR = "user.storage_server.file"
SWEEP_GRACE = 60.0  # seconds; see BlobStore.sweep

# Called with the current record of a key (None when there is none) while the key cannot change;
# raises PreconditionFailed to stop the write.
Precondition = Callable[[File | None], None]

_DIR = listing.DIR_FLAGS
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_COMMIT_ATTEMPTS = 16
# What a key's path meets when no file is there: nothing, a folder, a file on the way, a link.
_ABSENT = (errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.ELOOP)
_FILE_META_FIELDS = {"name", "content_type", "sha256", "created_at", "updated_at"}


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn the OSErrors a client can act on into StorageErrors; let any other one through."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage("not enough free space to store the file") from exc
        if exc.errno in (errno.ENOTDIR, errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST, errno.ELOOP):
            raise Conflict(f"{what} conflicts with an existing file or folder") from exc
        raise


def _now() -> datetime:
    return datetime.now(UTC)


def _load_renameat2() -> Any:
    fn = ctypes.CDLL(None, use_errno=True).renameat2
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn


_renameat2 = _load_renameat2()


def rename_noreplace(src: Path | str, dst_dir_fd: int, dst: str, src_dir_fd: int = _AT_FDCWD) -> None:
    """renameat2(RENAME_NOREPLACE): move src to dst unless dst exists (then FileExistsError)."""
    if _renameat2(src_dir_fd, os.fsencode(src), dst_dir_fd, os.fsencode(dst), _RENAME_NOREPLACE):
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), dst)


def _file_meta(record: File) -> bytes:
    return record.model_dump_json(include=_FILE_META_FIELDS).encode()


def _bucket_meta(bucket: Bucket) -> bytes:
    return bucket.model_dump_json(include={"public", "description", "created_at", "updated_at"}).encode()


class BlobReader:
    """An open stored file: `record` describes it, `read` returns its next bytes."""

    def __init__(self, fd: int, record: File) -> None:
        self._fd = fd
        self.offset = 0
        self.record = record

    def fileno(self) -> int:
        return self._fd

    def read(self, size: int) -> bytes:
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

    def __init__(self, store: BlobStore, bucket: str, parts: tuple[str, ...], bucket_fd: int):
        self._store = store
        self._bucket = bucket
        self._parts = parts
        self._lock = threading.Lock()
        self._hash = hashlib.sha256()
        self._copied_sha256: str | None = None
        self.size = 0
        self._temp: Path | None = store._tmp / f"{uuid.uuid4().hex}.part"
        self._fd: int | None = store._open_temp(self._temp)
        # Held open for the whole upload: the commit goes into this very bucket or nowhere,
        # and its inode cannot be reused by a bucket recreated under the same name meanwhile.
        self._bucket_fd: int | None = bucket_fd

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append data; raise InsufficientStorage when the disk is full."""
        with self._lock:
            fd = self._live_fd()
            self._hash.update(data)
            view = memoryview(data)
            size = view.nbytes
            with _translated("the upload"):
                while view:
                    view = view[os.write(fd, view) :]
            self.size += size

    def copy_from(self, reader: BlobReader) -> None:
        """Fill the upload with a stored file, in the kernel where it can; its sha256 is kept."""
        with self._lock, _translated("the copy"):
            fd = self._live_fd()
            left = reader.record.size
            while left > 0:
                done = os.copy_file_range(reader.fileno(), fd, left, reader.offset)
                if done == 0:
                    raise OSError(errno.EIO, "the source file ended early")
                reader.offset += done
                left -= done
            self.size = reader.record.size
            self._copied_sha256 = reader.record.sha256

    def sha256(self) -> str:
        """Hex SHA-256 of the bytes so far."""
        with self._lock:
            return self._copied_sha256 or self._hash.hexdigest()

    def commit(self, content_type: str, name: str, precondition: Precondition | None = None) -> File:
        """Write the metadata, fsync, rename into place, fsync the folder; return the record.

        Raises BucketNotFound if the bucket was deleted since the upload began, Conflict if a
        file or folder is in the way, PreconditionFailed when `precondition` says so,
        InsufficientStorage when the disk is full. Either way the temp file is gone afterwards.
        """
        with self._lock:
            fd = self._live_fd()
            try:
                return self._commit(fd, content_type, name, precondition)
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

    def _commit(self, fd: int, content_type: str, name: str, precondition: Precondition | None) -> File:
        store, bucket_fd = self._store, self._bucket_fd
        assert bucket_fd is not None
        now = _now()
        record = File(
            bucket=self._bucket,
            path="/".join(self._parts),
            name=name,
            size=self.size,
            content_type=content_type,
            sha256=self._copied_sha256 or self._hash.hexdigest(),
            created_at=now,
            updated_at=now,
        )
        with _translated("the upload"):
            os.setxattr(fd, FILE_XATTR, _file_meta(record))
            if store.fsync:
                os.fsync(fd)
        # The shared bucket lock keeps delete_bucket out; the check turns an upload into a bucket
        # deleted (or deleted and recreated) meanwhile into a 404.
        with store._locking(bucket_fd, self._bucket, exclusive=False):
            for _attempt in range(_COMMIT_ATTEMPTS):
                try:
                    with _translated("the key"):
                        parent = store._open_parent(bucket_fd, self._parts, create=True)
                except FileNotFoundError:
                    continue  # a concurrent delete pruned a folder on the way: make it again
                try:
                    with _translated("the key"), store._mutating(self._bucket):
                        record = self._place(fd, parent, record, precondition)
                    if store.fsync:
                        os.fsync(parent)
                    return record
                except FileNotFoundError:
                    if self._temp is None:
                        raise
                    continue  # the folder was pruned between open and rename: make it again
                except FileExistsError:
                    continue  # a file appeared where none was: check again
                finally:
                    os.close(parent)
        raise Conflict("the key's folder kept changing under concurrent writes; try again")

    def _place(self, fd: int, parent: int, record: File, precondition: Precondition | None) -> File:
        """Under the bucket's mutation lock: check the key's current state and rename into place."""
        store, leaf = self._store, self._parts[-1]
        current = store._current(parent, leaf)
        if current.folder:
            raise Conflict("a folder stands where the key needs a file")
        if precondition is not None:
            precondition(current.record)
        if current.record is not None and current.record.created_at != record.created_at:
            record = record.model_copy(update={"created_at": current.record.created_at})
            os.setxattr(fd, FILE_XATTR, _file_meta(record))
            if store.fsync:
                os.fsync(fd)
        assert self._temp is not None
        if current.present:
            os.replace(self._temp, leaf, dst_dir_fd=parent)
        else:
            rename_noreplace(self._temp, parent, leaf)
        self._temp = None
        assert self._bucket_fd is not None
        store._count(self._bucket_fd, 0 if current.counted else 1, record.size - current.size)
        return record

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


class _Current:
    """What stands at a key now: nothing, a file (with its record), a folder, or something else."""

    def __init__(self, present: bool, record: File | None = None, folder: bool = False) -> None:
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


class BlobStore:
    """Buckets and files under `root`. Synchronous and blocking: call it from worker threads."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(os.path.abspath(root))
        self.fsync = fsync
        internal = self.root / INTERNAL_DIR
        self._tmp = internal / "tmp"
        self._trash = internal / "trash"
        self._locks = internal / "locks"
        self._workers = internal / "workers"
        self._alive: int | None = None

    # -- start-up, health, recovery -------------------------------------------------------------

    def prepare(self) -> None:
        """Create the root and internal folders and check that the filesystem has what the store
        needs (user xattrs, renameat2); raise Unavailable with the reason if not."""
        probe = self._tmp / f"{uuid.uuid4().hex}.probe"
        try:
            for folder in (self._tmp, self._trash, self._locks, self._workers):
                folder.mkdir(parents=True, exist_ok=True)
            probe.mkdir()
            os.setxattr(probe, BUCKET_XATTR, b"{}")
            tmp_fd = os.open(self._tmp, _DIR)
            try:
                rename_noreplace(probe, tmp_fd, probe.name)
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

    def sweep(self, grace: float = SWEEP_GRACE) -> int:
        """Remove temp files and trashed buckets that no live process owns; return how many.

        A live upload or bucket delete holds an flock on its entry; `grace` spares entries so
        new that their creator may not have locked them yet. With no worker running, 0 is safe.
        """
        removed = 0
        cutoff = time.time() - grace
        for folder in (self._tmp, self._trash):
            with os.scandir(folder) as entries:
                for entry in entries:
                    with contextlib.suppress(FileNotFoundError):
                        if entry.stat(follow_symlinks=False).st_mtime > cutoff or _is_locked(entry.path):
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(entry.path, ignore_errors=True)
                        else:
                            os.unlink(entry.path)
                        removed += 1
        return removed

    def register_worker(self) -> None:
        """Mark this process as a live worker until it exits (or unregisters)."""
        marker = self._workers / f"{os.getpid()}-{uuid.uuid4().hex}.alive"
        self._alive = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        fcntl.flock(self._alive, fcntl.LOCK_EX)
        self._alive_path = marker

    def unregister_worker(self) -> None:
        if self._alive is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._alive_path)
            os.close(self._alive)
            self._alive = None

    def recover(self) -> list[int]:
        """Recount every bucket if a worker died without unregistering (it may have been between
        a rename and its counter update); return the PIDs of such workers."""
        dead = []
        with os.scandir(self._workers) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    if not _is_locked(entry.path):
                        os.unlink(entry.path)
                        dead.append(int(entry.name.split("-", 1)[0]))
        if dead:
            for bucket in self.list_buckets():
                with contextlib.suppress(BucketNotFound):
                    self.recount(bucket.name)
        return dead

    def recount(self, name: str) -> Bucket:
        """Recompute the bucket's file and byte counters by walking it."""
        with self._locked_bucket(name, exclusive=False) as fd, self._mutating(name):
            found = list(listing.sizes(fd))
            os.setxattr(fd, STATS_XATTR, f"{len(found)} {sum(found)}".encode())
            return self._read_bucket(fd, name)

    def is_writable(self) -> bool:
        """True when a file can be created, written and removed in the storage path."""
        probe = self._tmp / f"{uuid.uuid4().hex}.health"
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

    # -- buckets ----------------------------------------------------------------------------------

    def create_bucket(self, name: str, *, public: bool, description: str | None) -> tuple[Bucket, bool]:
        """Create a bucket and return it with True, or return the existing one untouched with False.

        Raises InvalidName. The folder appears with its metadata in one renameat2.
        """
        validate_bucket_name(name)
        now = _now()
        bucket = Bucket(name=name, public=public, description=description, created_at=now, updated_at=now)
        staged = self._tmp / f"{uuid.uuid4().hex}.bucket"
        created = False
        with self._root() as root_fd, _translated("the bucket"):
            try:
                os.mkdir(staged)
                os.setxattr(staged, BUCKET_XATTR, _bucket_meta(bucket))
                rename_noreplace(staged, root_fd, name)
                created = True
            except FileExistsError:
                pass
            finally:
                if not created:
                    with contextlib.suppress(OSError):
                        os.rmdir(staged)
            if created and self.fsync:
                os.fsync(root_fd)
        return (bucket, True) if created else (self.get_bucket(name), False)

    def list_buckets(self) -> list[Bucket]:
        """Every bucket, sorted by name."""
        buckets = []
        with self._root() as root_fd:
            for name in sorted(n for n in os.listdir(root_fd) if is_bucket_name(n)):
                with contextlib.suppress(BucketNotFound):
                    buckets.append(self._get_bucket(root_fd, name))
        return buckets

    def get_bucket(self, name: str) -> Bucket:
        """The bucket's record; raise InvalidName or BucketNotFound."""
        with self._root() as root_fd:
            return self._get_bucket(root_fd, name)

    def update_bucket(self, name: str, changes: dict[str, Any]) -> Bucket:
        """Apply `changes` (public, description) and return the bucket; raise BucketNotFound."""
        with self._locked_bucket(name, exclusive=True) as fd:
            bucket = self._read_bucket(fd, name)
            if all(getattr(bucket, field) == value for field, value in changes.items()):
                return bucket
            bucket = bucket.model_copy(update={**changes, "updated_at": _now()})
            with _translated("the bucket"):
                os.setxattr(fd, BUCKET_XATTR, _bucket_meta(bucket))
                if self.fsync:
                    os.fsync(fd)
            return bucket

    def delete_bucket(self, name: str) -> None:
        """Delete the bucket and every file in it; raise InvalidName or BucketNotFound.

        Under an exclusive lock the bucket is renamed into the trash, so it disappears at once
        and no upload committing afterwards can recreate it; the files are removed after.
        """
        trashed = self._trash / f"{name}.{uuid.uuid4().hex}"
        with self._locked_bucket(name, exclusive=True), self._root() as root_fd:
            os.rename(name, trashed, src_dir_fd=root_fd)
            if self.fsync:
                os.fsync(root_fd)
            shutil.rmtree(trashed, ignore_errors=True)  # still locked: sweep() keeps off

    # -- files ------------------------------------------------------------------------------------

    def begin_upload(
        self, bucket: str, key: str, size: int | None = None, precondition: Precondition | None = None
    ) -> Upload:
        """Start an upload of `key` (of `size` bytes, when known).

        Raises InvalidKey, InvalidName, BucketNotFound; Conflict when a file or folder stands in
        the key's way; InsufficientStorage when `size` bytes do not fit; PreconditionFailed
        when `precondition` already fails (it is checked again at commit).
        """
        parts = validate_key(key)
        if size is not None and size > self.free_bytes():
            raise InsufficientStorage(f"not enough free space for {size} bytes")
        with self._root() as root_fd:
            bucket_fd = self._open_bucket(root_fd, bucket)
        try:
            current = self._check_way(bucket_fd, parts)
            if precondition is not None:
                precondition(current)
            with _translated("the upload"):
                return Upload(self, bucket, parts, bucket_fd)
        except BaseException:
            os.close(bucket_fd)
            raise

    def open_file(self, bucket: str, key: str) -> BlobReader:
        """Open a stored file; raise InvalidKey, InvalidName, BucketNotFound or FileNotFound."""
        parts = validate_key(key)
        with self._root() as root_fd:
            bucket_fd = self._open_bucket(root_fd, bucket)
        try:
            parent = self._open_parent(bucket_fd, parts, create=False)
            try:
                fd = os.open(parts[-1], _FILE, dir_fd=parent)
            finally:
                os.close(parent)
        except OSError as exc:
            if exc.errno in _ABSENT:
                raise FileNotFound(bucket, key) from None
            raise
        finally:
            os.close(bucket_fd)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise FileNotFound(bucket, key)
            return BlobReader(fd, self._file_record(fd, info, bucket, "/".join(parts)))
        except BaseException:
            os.close(fd)
            raise

    def delete_file(self, bucket: str, key: str, precondition: Precondition | None = None) -> bool:
        """Delete a file and the folders it leaves empty; return False if there was none.

        Raises InvalidKey, InvalidName, BucketNotFound, PreconditionFailed.
        """
        parts = validate_key(key)
        with self._locked_bucket(bucket, exclusive=False) as bucket_fd:
            try:
                chain = self._open_chain(bucket_fd, parts[:-1])
            except OSError as exc:
                if exc.errno not in _ABSENT:
                    raise
                if precondition is not None:
                    precondition(None)
                return False
            try:
                with self._mutating(bucket):
                    current = self._current(chain[-1], parts[-1])
                    if precondition is not None:
                        precondition(current.record)
                    if not current.present or current.folder:
                        return False
                    os.unlink(parts[-1], dir_fd=chain[-1])
                    self._count(bucket_fd, -1 if current.counted else 0, -current.size)
                if self.fsync:
                    os.fsync(chain[-1])
                _prune(chain, parts)
                return True
            finally:
                for fd in chain:
                    os.close(fd)

    def move_file(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        precondition: Precondition | None = None,
    ) -> File:
        """Rename a file to another key, in the same or another bucket, in one atomic step.

        The destination is replaced if present (unless `precondition` refuses). Raises InvalidKey,
        InvalidName, BucketNotFound, FileNotFound, Conflict, PreconditionFailed.
        """
        src_parts, dst_parts = validate_key(src_key), validate_key(dst_key)
        with contextlib.ExitStack() as stack:
            src_fd = stack.enter_context(self._locked_bucket(src_bucket, exclusive=False))
            dst_fd = (
                src_fd
                if dst_bucket == src_bucket
                else stack.enter_context(self._locked_bucket(dst_bucket, exclusive=False))
            )
            try:
                src_chain = self._open_chain(src_fd, src_parts[:-1])
            except OSError as exc:
                if exc.errno in _ABSENT:
                    raise FileNotFound(src_bucket, src_key) from None
                raise
            for fd in src_chain:
                stack.callback(os.close, fd)
            for _attempt in range(_COMMIT_ATTEMPTS):
                try:
                    with _translated("the destination"):
                        dst_parent = self._open_parent(dst_fd, dst_parts, create=True)
                except FileNotFoundError:
                    continue
                try:
                    with _translated("the destination"), contextlib.ExitStack() as locks:
                        for name in sorted({src_bucket, dst_bucket}):
                            locks.enter_context(self._mutating(name))
                        source = self._current(src_chain[-1], src_parts[-1]).record
                        if source is None:
                            raise FileNotFound(src_bucket, src_key)
                        if (src_bucket, src_parts) == (dst_bucket, dst_parts):
                            return source
                        target = self._current(dst_parent, dst_parts[-1])
                        if target.folder:
                            raise Conflict("a folder stands where the destination needs a file")
                        if precondition is not None:
                            precondition(target.record)
                        os.rename(
                            src_parts[-1], dst_parts[-1], src_dir_fd=src_chain[-1], dst_dir_fd=dst_parent
                        )
                        moved = source.model_copy(update={"bucket": dst_bucket, "path": "/".join(dst_parts)})
                        self._count(src_fd, -1, -source.size)
                        self._count(dst_fd, 0 if target.counted else 1, source.size - target.size)
                    if self.fsync:
                        os.fsync(dst_parent)
                        os.fsync(src_chain[-1])
                    _prune(src_chain, src_parts)
                    return moved
                except FileNotFoundError:
                    continue
                finally:
                    os.close(dst_parent)
        raise Conflict("the destination's folder kept changing under concurrent writes; try again")

    def copy_file(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        precondition: Precondition | None = None,
    ) -> File:
        """Copy a file (bytes and metadata) to another key; same errors as move_file."""
        reader = self.open_file(src_bucket, src_key)
        try:
            upload = self.begin_upload(dst_bucket, dst_key, reader.record.size, precondition)
            try:
                upload.copy_from(reader)
                return upload.commit(reader.record.content_type, reader.record.name, precondition)
            finally:
                upload.abort()
        finally:
            reader.close()

    def list_files(
        self, bucket: str, prefix: str, delimited: bool, limit: int, after: bytes | None
    ) -> Listing:
        """One page of the files (and, when `delimited`, folders) whose keys start with `prefix`,
        in UTF-8 byte order, after the key whose UTF-8 bytes are `after`. A prefix no key can have
        lists nothing. Raises InvalidName, BucketNotFound."""
        files: list[File] = []
        common: list[str] = []
        last = None
        more = False
        with self._root() as root_fd:
            bucket_fd = self._open_bucket(root_fd, bucket)
        try:
            folders, partial = validate_prefix(prefix)
            chain = self._open_chain(bucket_fd, folders)
        except InvalidKey:
            folders, partial, chain = (), "", []
        except OSError as exc:
            folders, partial, chain = (), "", []
            if exc.errno not in _ABSENT:
                raise
        finally:
            os.close(bucket_fd)
        try:
            base = "".join(f"{f}/" for f in folders)
            for entry in listing.walk(chain[-1], base, partial, delimited, after) if chain else ():
                if len(files) + len(common) == limit:
                    more = True
                    break
                last = entry.key
                if entry.folder:
                    common.append(entry.key)
                elif (record := self._record_at(entry.dir_fd, entry.name, bucket, entry.key)) is not None:
                    files.append(record)
        finally:
            for fd in chain:
                os.close(fd)
        return Listing(
            bucket=bucket,
            prefix=prefix,
            delimiter="/" if delimited else None,
            files=files,
            folders=common,
            next_after=last if more else None,
        )

    # -- internals --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _root(self) -> Iterator[int]:
        try:
            fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise Unavailable("the storage path is unavailable") from exc
        try:
            yield fd
        finally:
            os.close(fd)

    def _open_temp(self, path: Path) -> int:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)  # marks it live for sweep()
        return fd

    @staticmethod
    def _open_bucket(root_fd: int, name: str) -> int:
        validate_bucket_name(name)
        try:
            return os.open(name, _DIR, dir_fd=root_fd)
        except OSError as exc:
            if exc.errno in _ABSENT:
                raise BucketNotFound(name) from None
            raise

    def _get_bucket(self, root_fd: int, name: str) -> Bucket:
        fd = self._open_bucket(root_fd, name)
        try:
            return self._read_bucket(fd, name)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locked_bucket(self, name: str, *, exclusive: bool) -> Iterator[int]:
        """Open and flock the bucket folder, checking it is still the one under its name."""
        with self._root() as root_fd:
            fd = self._open_bucket(root_fd, name)
        try:
            with self._locking(fd, name, exclusive=exclusive):
                yield fd
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def _locking(self, fd: int, name: str, *, exclusive: bool) -> Iterator[None]:
        """flock an open bucket folder; raise BucketNotFound unless it still stands under `name`.

        delete_bucket renames under the exclusive lock, so once the check passes with any lock
        held, the bucket stays put until the lock is released.
        """
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            with self._root() as root_fd:
                try:
                    now = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
                except FileNotFoundError:
                    raise BucketNotFound(name) from None
            info = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                raise BucketNotFound(name)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _mutating(self, bucket: str) -> Iterator[None]:
        """The bucket's mutation lock: one rename or unlink (and its counter update) at a time."""
        fd = os.open(self._locks / f"{bucket}.lock", os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @staticmethod
    def _count(bucket_fd: int, files: int, size: int) -> None:
        """Add to the bucket's file and byte counters; only with its mutation lock held."""
        count, total = _stats(bucket_fd)
        os.setxattr(bucket_fd, STATS_XATTR, f"{max(count + files, 0)} {max(total + size, 0)}".encode())

    @staticmethod
    def _read_bucket(fd: int, name: str) -> Bucket:
        try:
            meta = json.loads(os.getxattr(fd, BUCKET_XATTR))
        except OSError:
            # A folder made by hand: a private bucket dated by the folder itself.
            when = datetime.fromtimestamp(os.fstat(fd).st_mtime, UTC)
            meta = {"created_at": when, "updated_at": when}
        count, size = _stats(fd)
        return Bucket.model_validate({**meta, "name": name, "file_count": count, "total_size": size})

    def _open_parent(self, bucket_fd: int, parts: tuple[str, ...], *, create: bool) -> int:
        """Open the folder holding the key's last segment without following any symlink.

        With `create`, missing folders are made inside the bucket (never the bucket itself).
        Raises OSError (ENOENT, ENOTDIR, ELOOP) when a folder is missing or is something else.
        """
        _second_wall(parts)
        fd = os.dup(bucket_fd)
        try:
            for part in parts[:-1]:
                if create:
                    try:
                        os.mkdir(part, dir_fd=fd)
                        if self.fsync:
                            os.fsync(fd)
                    except FileExistsError:
                        pass
                child = os.open(part, _DIR, dir_fd=fd)
                os.close(fd)
                fd = child
            return fd
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _open_chain(bucket_fd: int, folders: tuple[str, ...]) -> list[int]:
        """Open the bucket and each of `folders` below it, without following symlinks; the
        caller closes them. Raises OSError (ENOENT, ENOTDIR, ELOOP) when one is missing."""
        _second_wall(folders)
        chain = [os.dup(bucket_fd)]
        try:
            for part in folders:
                chain.append(os.open(part, _DIR, dir_fd=chain[-1]))
            return chain
        except BaseException:
            for fd in chain:
                os.close(fd)
            raise

    def _check_way(self, bucket_fd: int, parts: tuple[str, ...]) -> File | None:
        """The record now at the key, if any; raise Conflict when a file or folder blocks it."""
        try:
            parent = self._open_parent(bucket_fd, parts, create=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise Conflict("a file stands where the key needs a folder") from exc
        try:
            current = self._current(parent, parts[-1])
        finally:
            os.close(parent)
        if current.folder:
            raise Conflict("a folder stands where the key needs a file")
        return current.record

    def _current(self, parent: int, name: str) -> _Current:
        """What stands at `name` in the open folder `parent` right now."""
        try:
            fd = os.open(name, _FILE, dir_fd=parent)
        except FileNotFoundError:
            return _Current(False)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return _Current(True)  # a symlink: replaced, never followed
            raise
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                return _Current(True, folder=True)
            if not stat.S_ISREG(info.st_mode):
                return _Current(True)
            return _Current(True, self._file_record(fd, info, "", name))
        finally:
            os.close(fd)

    def _record_at(self, dir_fd: int, name: str, bucket: str, key: str) -> File | None:
        try:
            fd = os.open(name, _FILE, dir_fd=dir_fd)
        except OSError:
            return None  # deleted since the folder was read
        try:
            info = os.fstat(fd)
            return self._file_record(fd, info, bucket, key) if stat.S_ISREG(info.st_mode) else None
        finally:
            os.close(fd)

    def _file_record(self, fd: int, info: os.stat_result, bucket: str, key: str) -> File:
        try:
            meta = json.loads(os.getxattr(fd, FILE_XATTR))
        except (OSError, ValueError):
            meta = self._describe_foreign(fd, info, key.rsplit("/", 1)[-1])
        return File.model_validate({**meta, "bucket": bucket, "path": key, "size": info.st_size})

    @staticmethod
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


def _is_locked(path: str) -> bool:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def _prune(chain: list[int], parts: tuple[str, ...]) -> None:
    """Remove the folders of `parts` left empty, deepest first; `chain` holds them open.

    An upload racing into one of them retries its commit (see Upload._commit).
    """
    for depth in range(len(chain) - 1, 0, -1):
        try:
            os.rmdir(parts[depth - 1], dir_fd=chain[depth - 1])
        except OSError:
            return


def _stats(bucket_fd: int) -> tuple[int, int]:
    """The bucket's (file count, total bytes); a bucket never counted has none."""
    try:
        count, size = os.getxattr(bucket_fd, STATS_XATTR).split()
        return int(count), int(size)
    except (OSError, ValueError):
        return 0, 0


def _second_wall(parts: tuple[str, ...]) -> None:
    """Refuse segments that would leave the bucket, whatever validate_key let through."""
    joined = "/" + "/".join(parts)
    if parts and posixpath.normpath(joined) != joined:
        raise InvalidKey("the key leaves its bucket")
