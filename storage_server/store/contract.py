"""The store contract: what every backend implements and every front door calls.

Three small Protocols make a `Store`: `Lifecycle` (start-up, upkeep, health: run.py and the
worker call it), `Buckets` and `Files` (the data: handlers call them). Every method blocks and is
safe to call from several threads at once; front doors run them off the event loop. Every error a
caller can act on is one of `errors.py`'s StorageError subclasses, listed per method below; any
other exception is a fault of the server (or the engine) and becomes a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from .records import BucketChanges, BucketRecord, FileRecord, Page

# Called with the current record of a key (None when there is none) just before a write takes
# effect, under the store's lock for that key; raises PreconditionFailed to stop the write.
Precondition = Callable[[FileRecord | None], None]


class Reader(Protocol):
    """An open stored file: one version of it, whatever happens to the key meanwhile (or
    FileChanged from `read` where a backend cannot pin the version)."""

    record: FileRecord

    def seek(self, offset: int, length: int) -> None:
        """Read `length` bytes from `offset` next; call it before the first read, or not at all
        to read the whole file."""

    def read(self, size: int) -> bytes:
        """The next `size` bytes at most, fewer only at the end of the span; b"" after it.
        Raises FileChanged when the version opened can no longer be read, Unavailable."""

    def close(self) -> None:
        """Release the file; safe more than once."""


class Upload(Protocol):
    """One upload being filled. Safe to call from any thread; after `commit` or `abort` nothing
    of it is left but (after a commit) the file."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append data; raise InsufficientStorage when there is no room for it, TooLarge as soon
        as the file grows past its bucket's file_size_limit, Unavailable."""

    def sha256(self) -> str:
        """Hex SHA-256 of the bytes so far."""

    def commit(
        self,
        *,
        content_type: str,
        name: str,
        metadata: Mapping[str, str] | None = None,
        precondition: Precondition | None = None,
    ) -> FileRecord:
        """Make the file visible under its key, all at once, and return its record. Raises
        BucketNotFound (the bucket was deleted meanwhile), Conflict, PreconditionFailed,
        TypeNotAllowed (the bucket's allowed_mime_types), InsufficientStorage, Unavailable. The
        upload is discarded either way."""

    def abort(self) -> None:
        """Discard the upload; safe at any time and more than once."""


class Lifecycle(Protocol):
    """Start-up, upkeep and health."""

    def prepare(self) -> None:
        """Check (and create) what the store needs at start; raise Unavailable with the reason."""

    def sweep(self, grace: float = ...) -> int:
        """Remove leftovers of uploads that no live process owns, untouched for `grace` seconds;
        return how many. Raises Unavailable (try again later)."""

    def register_worker(self) -> None:
        """Mark this process as a live worker until unregister_worker or its death."""

    def unregister_worker(self) -> None:
        """The worker stops cleanly."""

    def recover(self) -> list[int]:
        """Repair what workers that died mid-change left behind; return their PIDs."""

    def is_writable(self) -> bool:
        """Whether a file could be stored now."""

    def free_bytes(self) -> int | None:
        """Bytes left for files, when the backend knows (None otherwise)."""


class Buckets(Protocol):
    """Buckets: named, flat sets of files. Every method raises InvalidName for a bad name."""

    def create_bucket(
        self,
        name: str,
        *,
        public: bool = False,
        description: str | None = None,
        file_size_limit: int | None = None,
        allowed_mime_types: list[str] | None = None,
    ) -> tuple[BucketRecord, bool]:
        """Create a bucket and return it with True, or the existing one, untouched, with False;
        of racing creates exactly one gets True."""

    def list_buckets(self) -> list[BucketRecord]:
        """Every bucket, sorted by name."""

    def check_bucket(self, name: str) -> None:
        """Raise BucketNotFound unless the bucket exists (cheaper than get_bucket)."""

    def get_bucket(self, name: str, *, counted: bool = True) -> BucketRecord:
        """The bucket with its counts; raise BucketNotFound. With `counted` False a backend may
        leave file_count and total_size at 0 when they cost more than the record."""

    def update_bucket(self, name: str, changes: BucketChanges) -> BucketRecord:
        """Apply the changes and return the bucket (untouched, same updated_at, when they change
        nothing); raise BucketNotFound, Conflict (kept changing under concurrent updates)."""

    def delete_bucket(self, name: str) -> None:
        """Delete the bucket and every file in it, gone at once for every caller; an upload
        committing into it afterwards raises BucketNotFound. Raises BucketNotFound."""


class Files(Protocol):
    """Files, addressed by bucket and key. Every method raises InvalidName for a bad bucket name,
    InvalidKey for a bad key (see keys.py), BucketNotFound, and Unavailable when the storage
    itself fails."""

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
        """Start an upload of `key`: `size` is the file's size when known, `room` the most it
        may take when only that is known (a multipart body's length; default `size`),
        `content_type` its type when known now; with `md5` the record gets the MD5 of the bytes.
        Raises Conflict when a file or folder stands in the key's way, InsufficientStorage when
        `room` bytes do not fit, TooLarge or TypeNotAllowed when the bucket's limits refuse the
        size or type, PreconditionFailed when `precondition` already fails (it is checked again
        at commit; a backend may check only then)."""

    def open_file(self, bucket: str, key: str, *, stream: bool = False) -> Reader:
        """Open the file now stored at `key`; raise FileNotFound. `stream`: the caller will read
        it whole from the start, so a backend may start fetching its bytes with the open."""

    def delete_file(self, bucket: str, key: str, *, precondition: Precondition | None = None) -> bool:
        """Delete a file (a folder is left alone); return False if there was none. Raises
        PreconditionFailed."""

    def copy_file(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        precondition: Precondition | None = None,
    ) -> FileRecord:
        """Copy a file's bytes and metadata to another key (replaced if present, unless
        `precondition` refuses; the copy is dated now, keeping the destination's creation date
        on overwrite). Raises FileNotFound (the source), Conflict, PreconditionFailed,
        TooLarge and TypeNotAllowed (the destination bucket's limits), InsufficientStorage."""

    def move_file(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        precondition: Precondition | None = None,
    ) -> FileRecord:
        """Move a file to another key with its dates; the destination appears whole, and the
        source goes only if it is still the version moved (see docs/scaling-out.md for what each
        backend guarantees). Same errors as copy_file."""

    def list_files(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimited: bool = False,
        limit: int = 1000,
        after: bytes | None = None,
    ) -> Page:
        """One page of at most `limit` files (and, when `delimited`, folders: the common prefixes
        up to the next "/", each once) whose keys start with `prefix`, in UTF-8 byte order,
        after the key whose UTF-8 bytes are `after`. A prefix no key can have lists nothing."""


class Store(Lifecycle, Buckets, Files, Protocol):
    """A whole backend."""
