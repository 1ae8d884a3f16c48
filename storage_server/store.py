"""The storage interface the handlers talk to, and the one place that picks a backend for the
settings: `blobfs.BlobStore` (files on a local filesystem) or `s3store.S3Store` (objects in an
S3-compatible engine). Every method blocks: handlers run them in worker threads."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .models import Bucket, File, Listing
from .settings import Settings

# Called with the current record of a key (None when there is none) just before a write takes
# effect; raises PreconditionFailed to stop it.
Precondition = Callable[[File | None], None]


class Reader(Protocol):
    """An open stored file: `record` describes it, `read` returns its next bytes."""

    record: File

    def seek(self, offset: int, length: int) -> None:
        """Read `length` bytes from `offset` next (before the first read)."""

    def read(self, size: int) -> bytes:
        """The next `size` bytes at most; fewer only at the end of the span."""

    def buffered(self) -> bool:
        """Whether the next read is served from memory (no need for a thread)."""

    def close(self) -> None: ...


class Upload(Protocol):
    """One upload being filled; `commit` makes it visible at once, `abort` discards it. Safe to
    call from any thread; `abort` is safe at any time and more than once."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append data; raise InsufficientStorage when there is no room for it."""

    def sha256(self) -> str:
        """Hex SHA-256 of the bytes so far."""

    def commit(self, content_type: str, name: str, precondition: Precondition | None = None) -> File:
        """Make the file visible under its key and return its record; raise BucketNotFound,
        Conflict, PreconditionFailed, InsufficientStorage. The upload is discarded either way."""

    def abort(self) -> None: ...


class Store(Protocol):
    """Buckets and their files. Raises only the StorageError subclasses of `errors.py`."""

    def prepare(self) -> None:
        """Check (and create) what the store needs at start; raise Unavailable with the reason."""

    def sweep(self, grace: float = ...) -> int:
        """Remove leftovers of uploads that no live process owns; return how many."""

    def register_worker(self) -> None: ...

    def unregister_worker(self) -> None: ...

    def recover(self) -> list[int]:
        """Repair what workers that died mid-change left behind; return their PIDs."""

    def is_writable(self) -> bool: ...

    def free_bytes(self) -> int | None:
        """Bytes left for files, when the backend knows (None otherwise)."""

    def create_bucket(self, name: str, *, public: bool, description: str | None) -> tuple[Bucket, bool]: ...

    def list_buckets(self) -> list[Bucket]: ...

    def check_bucket(self, name: str) -> None:
        """Raise InvalidName or BucketNotFound unless the bucket exists; cheaper than get_bucket,
        which also counts its files."""

    def get_bucket(self, name: str) -> Bucket: ...

    def update_bucket(self, name: str, changes: dict[str, Any]) -> Bucket: ...

    def delete_bucket(self, name: str) -> None: ...

    def begin_upload(
        self, bucket: str, key: str, size: int | None = None, precondition: Precondition | None = None
    ) -> Upload: ...

    def open_file(self, bucket: str, key: str, read_ahead: int = 0) -> Reader: ...

    def delete_file(self, bucket: str, key: str, precondition: Precondition | None = None) -> bool: ...

    def move_file(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        precondition: Precondition | None = None,
    ) -> File: ...

    def copy_file(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        precondition: Precondition | None = None,
    ) -> File: ...

    def list_files(
        self, bucket: str, prefix: str, delimited: bool, limit: int, after: bytes | None
    ) -> Listing: ...


# Threads per worker for the store's blocking calls. A call to an object store mostly waits on the
# network, so the S3 store gets many (as many as its HTTP connections); the filesystem store keeps
# asyncio's default (CPUs + 4), which the disk prefers.
S3_THREADS = 64


def threads_for(config: Settings) -> int | None:
    """How many threads the store's calls should get (None: asyncio's default)."""
    return S3_THREADS if config.backend == "s3" else None


def open_store(config: Settings) -> Store:
    """The store the settings choose (not yet prepared)."""
    if config.backend == "s3":
        from .s3store import S3Store  # botocore is loaded only when it is used

        return S3Store.for_settings(config)
    from .blobfs import BlobStore

    return BlobStore.for_settings(config)
