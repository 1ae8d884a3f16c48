"""The filesystem store: buckets are folders under the root, files are plain files, and each
record's metadata rides in a user xattr, so it becomes visible in the same rename as the bytes.

Exceptions (everything this module raises on purpose derives from StorageError):

    StorageError               message safe to show a client
    ├── InvalidName            bad bucket name
    ├── InvalidKey             bad file key
    ├── NotFound
    │   ├── BucketNotFound
    │   └── FileNotFound
    ├── Conflict               a file where a folder is needed, or the reverse
    ├── InsufficientStorage    the disk is full (ENOSPC, EDQUOT)
    └── Unavailable            the storage path is missing or lacks xattrs / renameat2
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
import re
import shutil
import stat
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .models import Bucket, File

INTERNAL_DIR = ".storage-server"  # a bucket name cannot start with "."
BUCKET_XATTR = "user.storage_server.bucket"
FILE_XATTR = "user.storage_server.file"
KEY_MAX_BYTES = 1024
SEGMENT_MAX_BYTES = 255
SWEEP_GRACE = 60.0  # seconds; see BlobStore.sweep

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_COMMIT_ATTEMPTS = 16
# What a key's path meets when no file is there: nothing, a folder, a file on the way, a link.
_ABSENT = (errno.ENOENT, errno.EISDIR, errno.ENOTDIR, errno.ELOOP)
_FILE_META_FIELDS = {"name", "content_type", "sha256", "created_at", "updated_at"}


class StorageError(Exception):
    """Base of every error the store raises on purpose; its message is safe to show a client."""


class InvalidName(StorageError):
    pass


class InvalidKey(StorageError):
    pass


class NotFound(StorageError):
    pass


class BucketNotFound(NotFound):
    pass


class FileNotFound(NotFound):
    pass


class Conflict(StorageError):
    pass


class InsufficientStorage(StorageError):
    pass


class Unavailable(StorageError):
    pass


def validate_bucket_name(name: str) -> str:
    """Return `name` if it follows the S3 rule; raise InvalidName otherwise."""
    if not _BUCKET_NAME.fullmatch(name):
        raise InvalidName(
            "a bucket name is 3-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit"
        )
    return name


def validate_key(key: str) -> tuple[str, ...]:
    """Split a key into its segments; raise InvalidKey for anything but a plain relative path."""
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey("a key is valid UTF-8") from None
    if not 0 < size <= KEY_MAX_BYTES:
        raise InvalidKey(f"a key is 1 to {KEY_MAX_BYTES} bytes long")
    parts = tuple(key.split("/"))
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidKey("a key has no empty, '.' or '..' segments")
        if len(part.encode("utf-8")) > SEGMENT_MAX_BYTES:
            raise InvalidKey(f"a key segment is at most {SEGMENT_MAX_BYTES} bytes")
        if _CONTROL.search(part) or "\\" in part or part.isspace():
            raise InvalidKey("a key has no control characters, backslashes or blank segments")
    return parts


def bucket_not_found(name: str) -> BucketNotFound:
    return BucketNotFound(f"bucket '{name}' not found")


def file_not_found(bucket: str, parts: tuple[str, ...]) -> FileNotFound:
    return FileNotFound(f"file '{'/'.join(parts)}' not found in bucket '{bucket}'")


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


def rename_noreplace(src: Path, dst_dir_fd: int, dst: str) -> None:
    """renameat2(RENAME_NOREPLACE): move src to dst unless dst exists (then FileExistsError)."""
    if _renameat2(_AT_FDCWD, os.fsencode(src), dst_dir_fd, os.fsencode(dst), _RENAME_NOREPLACE):
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), dst)


def _file_meta(record: File) -> bytes:
    return record.model_dump_json(include=_FILE_META_FIELDS).encode()


def _bucket_meta(bucket: Bucket) -> bytes:
    return bucket.model_dump_json(exclude={"name"}).encode()


class BlobReader:
    """An open stored file: `record` describes it, `read` returns its next bytes."""

    def __init__(self, fd: int, record: File) -> None:
        self._fd = fd
        self._offset = 0
        self.record = record

    def read(self, size: int) -> bytes:
        data = os.pread(self._fd, size, self._offset)
        self._offset += len(data)
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

    def commit(self, content_type: str, name: str) -> File:
        """Write the metadata, fsync, rename into place, fsync the folder; return the record.

        Raises BucketNotFound if the bucket was deleted since the upload began, Conflict if a
        file or folder is in the way, InsufficientStorage when the disk is full. Whatever
        happens, the temp file is gone afterwards.
        """
        with self._lock:
            fd = self._live_fd()
            try:
                return self._commit(fd, content_type, name)
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

    def _commit(self, fd: int, content_type: str, name: str) -> File:
        store = self._store
        now = _now()
        record = File(
            bucket=self._bucket,
            path="/".join(self._parts),
            name=name,
            size=self.size,
            content_type=content_type,
            sha256=self._hash.hexdigest(),
            created_at=now,
            updated_at=now,
        )
        # The shared lock keeps delete_bucket out until the rename is done; the check turns an
        # upload into a bucket deleted (or deleted and recreated) meanwhile into a 404.
        bucket_fd = self._bucket_fd
        assert bucket_fd is not None
        with store._locking(bucket_fd, self._bucket, exclusive=False):
            for _attempt in range(_COMMIT_ATTEMPTS):
                try:
                    with _translated("the key"):
                        parent = store._open_parent(bucket_fd, self._parts, create=True)
                except FileNotFoundError:
                    continue  # a concurrent delete pruned a folder on the way: make it again
                try:
                    created = store._created_at(parent, self._parts[-1])
                    if created is not None:
                        record = record.model_copy(update={"created_at": created})
                    with _translated("the key"):
                        os.setxattr(fd, FILE_XATTR, _file_meta(record))
                        if store.fsync:
                            os.fsync(fd)
                        assert self._temp is not None
                        os.replace(self._temp, self._parts[-1], dst_dir_fd=parent)
                        self._temp = None
                        if store.fsync:
                            os.fsync(parent)
                    return record
                except FileNotFoundError:
                    if self._temp is None:
                        raise
                    continue  # the folder was pruned between open and rename: make it again
                finally:
                    os.close(parent)
        raise Conflict("the key's folder kept disappearing under concurrent deletes; try again")

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


class BlobStore:
    """Buckets and files under `root`. Synchronous and blocking: call it from worker threads."""

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(os.path.abspath(root))
        self.fsync = fsync
        self._tmp = self.root / INTERNAL_DIR / "tmp"
        self._trash = self.root / INTERNAL_DIR / "trash"

    # -- start-up and health ------------------------------------------------------------------

    def prepare(self) -> None:
        """Create the root and internal folders and check that the filesystem has what the store
        needs (user xattrs, renameat2); raise Unavailable with the reason if not."""
        probe = self._tmp / f"{uuid.uuid4().hex}.probe"
        try:
            self._tmp.mkdir(parents=True, exist_ok=True)
            self._trash.mkdir(exist_ok=True)
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
                        if entry.stat(follow_symlinks=False).st_mtime > cutoff or self._is_locked(entry.path):
                            continue
                        if entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(entry.path, ignore_errors=True)
                        else:
                            os.unlink(entry.path)
                        removed += 1
        return removed

    @staticmethod
    def _is_locked(path: str) -> bool:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

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
            names = sorted(n for n in os.listdir(root_fd) if _BUCKET_NAME.fullmatch(n))
            for name in names:
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

    def begin_upload(self, bucket: str, key: str, size: int | None = None) -> Upload:
        """Start an upload of `key` (of `size` bytes, when known); raise InvalidKey, InvalidName,
        BucketNotFound, Conflict when a file or folder stands in the key's way, or
        InsufficientStorage when `size` bytes do not fit on the disk."""
        parts = validate_key(key)
        if size is not None and size > self.free_bytes():
            raise InsufficientStorage(f"not enough free space for {size} bytes")
        with self._root() as root_fd:
            bucket_fd = self._open_bucket(root_fd, bucket)
        try:
            self._check_way(bucket_fd, parts)
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
                    raise file_not_found(bucket, parts) from None
                raise
            finally:
                os.close(bucket_fd)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise file_not_found(bucket, parts)
            return BlobReader(fd, self._file_record(fd, info, bucket, parts))
        except BaseException:
            os.close(fd)
            raise

    def delete_file(self, bucket: str, key: str) -> None:
        """Delete a file and the folders it leaves empty; a missing file is not an error.

        Raises InvalidKey, InvalidName or BucketNotFound.
        """
        parts = validate_key(key)
        with self._locked_bucket(bucket, exclusive=False) as bucket_fd:
            chain = [os.dup(bucket_fd)]
            try:
                for part in parts[:-1]:
                    chain.append(os.open(part, _DIR, dir_fd=chain[-1]))
                os.unlink(parts[-1], dir_fd=chain[-1])
                if self.fsync:
                    os.fsync(chain[-1])
                # Prune folders left empty, deepest first. An upload racing into one of them
                # retries its commit (see Upload._commit).
                for depth in range(len(chain) - 1, 0, -1):
                    os.rmdir(parts[depth - 1], dir_fd=chain[depth - 1])
            except OSError as exc:
                if exc.errno not in (*_ABSENT, errno.ENOTEMPTY, errno.EEXIST, errno.EBUSY):
                    raise
            finally:
                for fd in chain:
                    os.close(fd)

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
                raise bucket_not_found(name) from None
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
                    raise bucket_not_found(name) from None
            info = os.fstat(fd)
            if (now.st_dev, now.st_ino) != (info.st_dev, info.st_ino):
                raise bucket_not_found(name)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    @staticmethod
    def _read_bucket(fd: int, name: str) -> Bucket:
        try:
            meta = json.loads(os.getxattr(fd, BUCKET_XATTR))
        except OSError:
            # A folder made by hand: a private bucket dated by the folder itself.
            when = datetime.fromtimestamp(os.fstat(fd).st_mtime, UTC)
            meta = {"created_at": when, "updated_at": when}
        return Bucket.model_validate({**meta, "name": name})

    def _open_parent(self, bucket_fd: int, parts: tuple[str, ...], *, create: bool) -> int:
        """Open the folder holding the key's last segment without following any symlink.

        With `create`, missing folders are made inside the bucket (never the bucket itself).
        Raises OSError (ENOENT, ENOTDIR, ELOOP) when a folder is missing or is something else.
        """
        joined = "/" + "/".join(parts)
        if posixpath.normpath(joined) != joined:
            raise InvalidKey("the key leaves its bucket")  # second wall behind validate_key
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

    def _check_way(self, bucket_fd: int, parts: tuple[str, ...]) -> None:
        """Raise Conflict early when an existing file or folder blocks the key."""
        try:
            parent = self._open_parent(bucket_fd, parts, create=False)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise Conflict("a file stands where the key needs a folder") from exc
        try:
            info = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        finally:
            os.close(parent)
        if stat.S_ISDIR(info.st_mode):
            raise Conflict("a folder stands where the key needs a file")

    @staticmethod
    def _created_at(parent: int, name: str) -> datetime | None:
        """When the file now at `name` was first stored, if it is one of ours: kept on overwrite."""
        try:
            fd = os.open(name, _FILE, dir_fd=parent)
        except OSError:
            return None
        try:
            return datetime.fromisoformat(json.loads(os.getxattr(fd, FILE_XATTR))["created_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        finally:
            os.close(fd)

    def _file_record(self, fd: int, info: os.stat_result, bucket: str, parts: tuple[str, ...]) -> File:
        try:
            meta = json.loads(os.getxattr(fd, FILE_XATTR))
        except (OSError, ValueError):
            meta = self._describe_foreign(fd, info, parts[-1])
        return File.model_validate({**meta, "bucket": bucket, "path": "/".join(parts), "size": info.st_size})

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
