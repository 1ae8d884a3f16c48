"""What a download checks of the stored bytes: a file marked damaged is refused (409 `damaged`),
and `X-Verify: sha256` makes a full download hash the bytes as they are sent, so that a mismatch
is caught before the last of them goes out (the file is then marked damaged; see files.py)."""

from __future__ import annotations

import hashlib
import logging

from tornado.httputil import HTTPHeaders

from .. import telemetry
from ..store.contract import Reader, Store
from ..store.errors import Damaged
from ..store.records import FileRecord
from .errors import ApiError

log = logging.getLogger("storage_server")

HEADER = "X-Verify"
VALUES = ("sha256",)
DESCRIPTION = (
    "`sha256`: hash the bytes as they are sent and, should they not match the file's sha256, "
    "cut the connection before the last of them (the file is marked damaged); full downloads "
    "only, ignored with `Range`"
)


def wants_verify(headers: HTTPHeaders) -> bool:
    """Whether the request asks for a verified read; 400 `bad_request` for a value not in VALUES."""
    value = headers.get(HEADER)
    if value is None:
        return False
    if value not in VALUES:
        raise ApiError("bad_request", f"{HEADER} takes one of: {', '.join(VALUES)}")
    return True


class Verifier:
    """The running sha256 of the bytes of one download, to hold against its record."""

    def __init__(self, record: FileRecord) -> None:
        self.record = record
        self.size = 0
        self._hash = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)

    def found(self) -> str:
        return self._hash.hexdigest()

    def matches(self) -> bool:
        """Whether the bytes so far hash to the record's sha256 (a file with none, an object put
        into the engine by hand, has nothing to be held against: it matches)."""
        return not self.record.sha256 or self.found() == self.record.sha256


def refuse_damaged(reader: Reader, bucket: str, key: str) -> None:
    """Raise Damaged (closing the reader) when the file opened is marked damaged."""
    if reader.record.damaged is not None:
        reader.close()
        raise Damaged(bucket, key)


def open_hot(store: Store, bucket: str, key: str, head: int) -> tuple[Reader, bytes] | None:
    """open_for_download on the event loop, for a file the store can open and read without
    waiting (store.open_cached); None otherwise. Raises Damaged, InvalidKey, InvalidName."""
    opened = store.open_cached(bucket, key, head=head)
    if opened is not None:
        refuse_damaged(opened[0], bucket, key)
    return opened


def open_for_download(store: Store, bucket: str, key: str, head: int, verify: bool) -> tuple[Reader, bytes]:
    """Open a file and read its first `head` bytes, in one trip to a thread. Raise Damaged when
    the file is marked damaged, or when `verify`, those bytes are the whole file and do not match
    its sha256 (it is marked damaged then); the store's errors otherwise."""
    reader = store.open_file(bucket, key, stream=head > 0)
    refuse_damaged(reader, bucket, key)
    try:
        first = reader.read(head) if head else b""
        if verify and len(first) == reader.record.size:
            verifier = Verifier(reader.record)
            verifier.update(first)
            if not verifier.matches():
                report_damage(store, verifier)
                raise Damaged(bucket, key)
        return reader, first
    except BaseException:
        reader.close()
        raise


def read(reader: Reader, size: int, verifier: Verifier | None) -> bytes:
    """The reader's next `size` bytes at most, added to `verifier`'s hash when there is one (in
    the thread that reads them: hashing a block is too slow for the event loop)."""
    block = reader.read(size)
    if verifier is not None:
        verifier.update(block)
    return block


def report_damage(store: Store, verifier: Verifier) -> None:
    """Mark the version a verified read found damaged, log it and count it. Blocking."""
    record = verifier.record
    marked = store.mark_damaged(record, found_sha256=verifier.found(), found_size=verifier.size)
    if not marked:
        return  # replaced meanwhile: what was read was not the current file
    log.error(
        "damaged file %s/%s found by a verified read: expected sha256 %s, found %s; marked",
        record.bucket,
        record.path,
        record.sha256,
        verifier.found(),
    )
    telemetry.scrub_damaged("read")
