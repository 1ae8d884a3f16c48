"""What every backend does the same with staged parts: copying a stored part into a writer,
hashing a part that grows by appends behind its writes, once (`Trailing`, kept per process in
`RUNNING`), and completing a staged upload by streaming its parts, in the order asked, into an
ordinary upload committed through it (so that the bucket's limits and the conditions hold as for
any upload). A backend gives only how to read one of its parts."""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .contract import PartUpload, Precondition, Upload
from .errors import InvalidPart
from .records import FileRecord, StagedRecord

Chunks = Generator[bytes, None, None]
# The bytes of part `number` of the upload, in chunks; raises InvalidPart at once (not when the
# chunks are read) when it is not there.
ReadPart = Callable[[int], Chunks]
# Read a part's bytes from `offset` into `buffer`; return how many (0 past its end).
ReadAt = Callable[[int, memoryview], int]
READ = 1024 * 1024
KEPT = 256  # Trailing digests kept per process; one evicted costs a re-read of its part
PARALLEL_FROM = 256 * 1024  # a buffer this large is hashed in two threads at once


def extend(writer: PartUpload, chunks: Chunks) -> None:
    """Start `writer` with `chunks` (a part stored before); it is aborted if that fails."""
    try:
        with contextlib.closing(chunks):
            for chunk in chunks:
                writer.write(chunk)
    except BaseException:
        writer.abort()
        raise


class _Threads:
    """A pool of helper threads, made on first use, and anew in a forked child (where the
    parent's threads are gone)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pool = None

    def submit(self, fn: Callable[..., None], *args: Any) -> Future[None]:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(os.cpu_count() or 2, thread_name_prefix=self._name)
            return self._pool.submit(fn, *args)


_BESIDE = _Threads("md5")  # an MD5 beside the caller's SHA-256 (never waits on itself)
_TRAILING = _Threads("trailing")  # Trailing's catch-ups


class Digests:
    """The MD5 and SHA-256 of the first `size` bytes of a part."""

    def __init__(self) -> None:
        self.size = 0
        self._md5 = hashlib.md5()
        self._sha256 = hashlib.sha256()

    def update(
        self, data: bytes | bytearray | memoryview, beside: Callable[[], object] | None = None
    ) -> None:
        """Hash `data`; with `beside`, call it meanwhile (a write of the same bytes). A large
        buffer's MD5, the slower of the two, runs in a helper thread beside the rest (hashlib
        lets go of the GIL for large buffers)."""
        if memoryview(data).nbytes < PARALLEL_FROM:
            if beside is not None:
                beside()
            self._md5.update(data)
        else:
            trial = self._md5.copy()  # kept only if `beside` succeeds: the digests stay whole
            md5 = _BESIDE.submit(trial.update, data)
            try:
                if beside is not None:
                    beside()
            finally:
                md5.result()
            self._md5 = trial
        self._sha256.update(data)
        self.size += memoryview(data).nbytes

    def copy(self) -> Digests:
        twin = Digests()
        twin.size, twin._md5, twin._sha256 = self.size, self._md5.copy(), self._sha256.copy()
        return twin

    def md5(self) -> str:
        return self._md5.hexdigest()

    def sha256(self) -> str:
        return self._sha256.hexdigest()


class Trailing:
    """The digests of a part that grows by appends, hashed behind the writes: `advance` says how
    far the part is durable, and a helper thread reads those bytes back (from the page cache,
    mostly) and hashes them, between and beside the requests that append, instead of in their
    way. `settle` waits for them at completion. Bytes below a part's durable size never change,
    so hashing them late hashes the same bytes."""

    def __init__(self, digests: Digests) -> None:
        self._cond = threading.Condition()
        self._work = digests  # only the running catch-up touches it
        self._done = digests.copy()  # its last state, for readers
        self._target = digests.size
        self._read: ReadAt | None = None
        self._running = False
        self._error: BaseException | None = None

    def advance(self, size: int, read: ReadAt) -> None:
        """The part is durable up to `size` bytes, readable with `read` (which replaces the one
        given before, for the next reads): hash up to there, in a helper thread."""
        with self._cond:
            self._target = max(self._target, size)
            self._read, self._error = read, None
            if not self._running and self._done.size < self._target:
                self._running = True
                _TRAILING.submit(self._catch_up)

    def settle(self, size: int, read: ReadAt) -> Digests:
        """The digests of the first `size` bytes, once the helper thread has hashed them; raise
        what reading them raised."""
        self.advance(size, read)
        with self._cond:
            while self._running and self._done.size < size and self._error is None:
                self._cond.wait()
            if self._error is not None:
                raise self._error
            if self._done.size != size:
                raise InvalidPart("a staged part changed under its digests")
            return self._done.copy()

    def _catch_up(self) -> None:
        buffer = memoryview(bytearray(READ))  # reused: no allocation per read
        while True:
            with self._cond:
                start, end, read = self._work.size, self._target, self._read
                if start >= end or read is None:
                    self._running = False
                    self._cond.notify_all()
                    return
            try:
                done = read(start, buffer[: min(READ, end - start)])
                if not done:
                    raise InvalidPart("a staged part is shorter than its record")
                self._work.update(buffer[:done])
            except BaseException as exc:
                with self._cond:
                    self._error, self._running = exc, False
                    self._cond.notify_all()
                return
            with self._cond:
                self._done = self._work.copy()
                self._cond.notify_all()


class Running:
    """The Trailing digests of the parts growing in this process, by a token that names one
    part file for its whole life (never reused); any worker may have appended since, so a
    Trailing is advanced to the part's size before its digests are used."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, Trailing] = OrderedDict()

    def follow(self, token: str, digests: Digests | None = None) -> Trailing:
        """The Trailing of `token`: the one kept, else a new one from `digests` (or from 0)."""
        with self._lock:
            kept = self._kept.get(token)
            if kept is None:
                kept = self._kept[token] = Trailing(digests or Digests())
            self._kept.move_to_end(token)
            while len(self._kept) > KEPT:
                self._kept.popitem(last=False)
            return kept

    def get(self, token: str) -> Trailing | None:
        with self._lock:
            return self._kept.get(token)

    def forget(self, token: str) -> None:
        with self._lock:
            self._kept.pop(token, None)

    def forget_all(self) -> None:
        """As a new process starts: every part is hashed again, from its start."""
        with self._lock:
            self._kept.clear()


RUNNING = Running()


def assemble(
    begin_upload: Callable[..., Upload],
    record: StagedRecord,
    numbers: Sequence[int],
    read_part: ReadPart,
    *,
    content_type: str,
    name: str,
    metadata: Mapping[str, str] | None,
    precondition: Precondition | None,
    md5: bool,
) -> FileRecord:
    """Commit the parts `numbers` of `record` as its key's file; raise InvalidPart for a part
    that was never uploaded or is gone, and what the upload raises."""
    parts = {p.number: p for p in record.parts}
    missing = [n for n in numbers if n not in parts]
    if missing:
        raise InvalidPart(f"part {missing[0]} was not uploaded")
    size = sum(parts[n].size for n in numbers)
    upload = begin_upload(record.bucket, record.key, size=size, precondition=precondition, md5=md5)
    try:
        for number in numbers:
            with contextlib.closing(read_part(number)) as chunks:
                for chunk in chunks:
                    upload.write(chunk)
        done: FileRecord = upload.commit(
            content_type=content_type, name=name, metadata=metadata, precondition=precondition
        )
        return done
    finally:
        upload.abort()
