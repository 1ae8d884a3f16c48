"""The store contract: what every backend implements and every front door calls.

Four small Protocols make a `Store`: `Lifecycle` (start-up, upkeep, health: run.py and the
worker call it), `Buckets` and `Files` (the data: handlers call them), and `Integrity` (damaged
files and the scrub's lock and position: the scrubber and verified reads call it). Every method blocks and is
safe to call from several threads at once; front doors run them off the event loop. Every error a
caller can act on is one of `errors.py`'s StorageError subclasses, listed per method below; any
other exception is a fault of the server (or the engine) and becomes a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

from .records import (
    BucketChanges,
    BucketRecord,
    Damage,
    FileRecord,
    Page,
    PartRecord,
    ScrubState,
    StagedRecord,
)

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
        it whole from the start, so a backend may start fetching its bytes with the open. A file
        marked damaged opens all the same: its record's `damaged` says so."""

    def open_cached(self, bucket: str, key: str, *, head: int) -> tuple[Reader, bytes] | None:
        """What `open_file` and reading the first `head` bytes give, but only if it can be done
        without waiting on a disk or the network (it is called on the event loop); None when it
        cannot, and the caller calls `open_file` in a thread (which raises for bad names, if
        this did not: InvalidKey, InvalidName)."""

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
        on overwrite). Raises FileNotFound (the source), Damaged (the source is marked damaged),
        Conflict, PreconditionFailed, TooLarge and TypeNotAllowed (the destination bucket's
        limits), InsufficientStorage."""

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


class ScrubLock(Protocol):
    """The store's scrub lock, held by its taker: no other scrub runs on the store until it is
    released (or, where it is a lease, until it expires unrenewed)."""

    def keep(self) -> bool:
        """Renew the hold (call it every half minute at least); False when it was lost."""

    def release(self) -> None:
        """Let another scrub run; safe more than once."""


class Integrity(Protocol):
    """Proof that stored bytes are the ones acknowledged: marks on damaged file versions, their
    listing, and the scrub's lock and saved position. Every method raises Unavailable when the
    storage itself fails."""

    def mark_damaged(self, record: FileRecord, *, found_sha256: str, found_size: int) -> bool:
        """Mark the version of a file that `record` describes (its bucket, path, sha256 and
        updated_at) as damaged, its bytes having hashed to `found_sha256` over `found_size` bytes,
        and list it; from then on its record's `damaged` is `found_sha256`, until a new upload of
        the key. Return False, marking nothing, when the key no longer holds that version (a
        re-upload or a delete came first, or the bucket is gone); True when it is marked, also if
        it already was (its entry in the listing is then restored if missing, else kept).
        Raises InvalidKey."""

    def list_damaged(self, bucket: str | None = None) -> list[Damage]:
        """The files marked damaged (only those of `bucket`, when given), sorted by bucket and
        path. Entries whose file was re-uploaded or deleted since are dropped for good. Raises
        InvalidName, BucketNotFound (for `bucket`)."""

    def lock_scrub(self) -> ScrubLock | None:
        """Take the store's scrub lock, one holder across every process and node at a time; None
        when another scrub holds it."""

    def load_scrub_state(self) -> ScrubState:
        """The scrub state last saved (an empty one when none was, or it does not parse)."""

    def save_scrub_state(self, state: ScrubState) -> None:
        """Replace the saved scrub state, at once; only the holder of the scrub lock calls it."""


class PartUpload(Protocol):
    """One part of a staged upload being written. Safe to call from any thread."""

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append data; raise InsufficientStorage, Unavailable."""

    def commit(self) -> PartRecord:
        """Make the part durable under its number (replacing an earlier part of that number at
        once) and return its record; raise NoSuchUpload (aborted or expired meanwhile)."""

    def abort(self) -> None:
        """Discard what was written; safe at any time and more than once."""


class Staging(Protocol):
    """Uploads assembled from parts over many requests (S3 multipart uploads, tus resumable
    uploads), kept in the store so that any worker (and on S3 any node) can go on with one,
    and committed as one file through the same commit as every other upload. A staged upload
    untouched for longer than the store's expiry is removed by the sweep."""

    # Whether appending to a part (begin_part with `append`) costs only the bytes appended: True
    # where a part grows where it is (the filesystem), so that a front door streaming one file
    # in chunks keeps it in one part, which complete_staged commits without copying it; False
    # where appending rewrites the whole part (S3: a part is an object), so that a front door
    # starts a new part every few MiB instead.
    appends_in_place: bool

    def begin_staged(self, bucket: str, key: str, *, info: Mapping[str, str] | None = None) -> StagedRecord:
        """Start a staged upload of `key`, keeping `info` (a front door's own state) with it.
        Raises InvalidName, InvalidKey, BucketNotFound."""

    def get_staged(self, upload_id: str) -> StagedRecord:
        """The staged upload with its parts (in number order); raise NoSuchUpload."""

    def list_staged(self, bucket: str) -> list[StagedRecord]:
        """The staged uploads into `bucket`, oldest first; raise BucketNotFound."""

    def begin_part(
        self, upload_id: str, number: int, *, exclusive: bool = False, append: bool = False
    ) -> PartUpload:
        """Start writing part `number` (1 to 10,000). With `exclusive`, raise Locked while
        another exclusive part of this upload is being written (in any process). With `append`,
        the part starts with the bytes of the part `number` already stored, if any (small
        chunks coalesced into one part; with `exclusive` too, in place where the backend
        `appends_in_place`: such a part is hashed behind its writes, and may list empty digests
        until complete_staged). Raises NoSuchUpload, InvalidPart (a number out of range)."""

    def complete_staged(
        self,
        upload_id: str,
        numbers: Sequence[int],
        *,
        content_type: str,
        name: str,
        metadata: Mapping[str, str] | None = None,
        precondition: Precondition | None = None,
        md5: bool = False,
    ) -> FileRecord:
        """Commit the parts `numbers`, in that order, as the file at the upload's key (the
        bucket's limits and `precondition` apply, as for any upload), then remove the staged
        upload. Raises NoSuchUpload, InvalidPart (a number not staged), and what Upload.commit
        raises; on an error the staged upload stays as it was. A backend may raise Locked while
        an exclusive part of the upload is being written or another completion of it runs."""

    def abort_staged(self, upload_id: str) -> None:
        """Remove the staged upload and its parts; raise NoSuchUpload."""


class Store(Lifecycle, Buckets, Files, Integrity, Staging, Protocol):
    """A whole backend."""
