"""Group commit for the filesystem store: uploads into one bucket that reach their commit at the
same time share one pass under the bucket's locks (each lock taken once, one counter update) and
one fsync per folder, instead of paying all of that once each.

Each upload writes its metadata and fsyncs its own bytes in its own thread first (concurrent
fsyncs are grouped into one journal commit by the kernel), then joins its bucket's queue. The
first committer that finds no pass running for the bucket leads one over everything queued; the
others wait for it, and whoever arrives during a pass is served by the next one. A commit
returns only after the fsync of the folder its rename went into, which the pass issues after
all of its renames: the ordering of every single upload (bytes synced, rename, folder synced,
answer) is kept, only the folder flushes and the locks are shared.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Protocol

from ..store.errors import Conflict
from ..store.localdisk import os_errors
from ..store.records import FileRecord
from . import ops as fsops

COMMIT_ATTEMPTS = 16


class Locks(Protocol):
    """What a pass needs of the store (fs/layout.Layout)."""

    fsync: bool

    def locking(self, fd: int, name: str, *, exclusive: bool) -> contextlib.AbstractContextManager[None]: ...

    def mutating(self, bucket: str) -> contextlib.AbstractContextManager[None]: ...


class Placement(Protocol):
    """What a pass needs of a waiting upload (fs/staging.Upload)."""

    @property
    def parts(self) -> tuple[str, ...]: ...

    @property
    def pending(self) -> bool:
        """Whether its temp file still waits to be renamed."""

    def place(self, parent: int) -> tuple[FileRecord, int, int]:
        """Under the bucket's mutation lock: rename into the open folder `parent`; return the
        record and what the bucket's file and byte counters gain. Raises FileNotFoundError or
        FileExistsError when the folder or the key changed meanwhile (try again), or the
        store's errors."""


class _Entry:
    __slots__ = ("done", "error", "record", "upload")

    def __init__(self, upload: Placement) -> None:
        self.upload = upload
        self.record: FileRecord | None = None  # placed; answered only once `done` without error
        self.error: BaseException | None = None
        self.done = False  # set, under the condition's lock, when its pass is over


class Committer:
    """The queues and passes of one store in one process; safe to call from any thread."""

    def __init__(self, locks: Locks) -> None:
        self._locks = locks
        self._cond = threading.Condition(threading.Lock())
        self._queues: dict[tuple[str, int, int], list[_Entry]] = {}
        self._running: set[tuple[str, int, int]] = set()
        self.passes = 0  # passes run, and uploads placed by them (under the condition's lock)
        self.placed = 0

    def commit(self, bucket: str, bucket_fd: int, upload: Placement) -> FileRecord:
        """Place `upload` (whose bytes are already synced) in the bucket open as `bucket_fd`;
        return its record once its folder is synced. Raises BucketNotFound when the bucket was
        deleted meanwhile, Conflict, PreconditionFailed, InsufficientStorage, OSError."""
        info = os.fstat(bucket_fd)
        key = (bucket, info.st_dev, info.st_ino)  # a bucket recreated under its name is another
        entry = _Entry(upload)
        with self._cond:
            self._queues.setdefault(key, []).append(entry)
            while not entry.done:
                if key in self._running:
                    self._cond.wait()
                    continue
                self._running.add(key)
                batch = self._queues.pop(key)
                with self._unlocked():
                    self._run(bucket, bucket_fd, batch)
                self.passes += 1
                for each in batch:
                    each.done = True
                    self.placed += each.record is not None and each.error is None
                self._running.discard(key)
                self._cond.notify_all()
        if entry.error is not None:
            raise entry.error
        assert entry.record is not None
        return entry.record

    @contextlib.contextmanager
    def _unlocked(self) -> Iterator[None]:
        self._cond.release()
        try:
            yield
        finally:
            self._cond.acquire()

    def _run(self, bucket: str, bucket_fd: int, batch: list[_Entry]) -> None:
        """One pass: every entry of `batch` ends with a record or an error."""
        waiting = batch
        try:
            # The shared bucket lock keeps delete_bucket out; its check turns an upload into a
            # bucket deleted (or deleted and recreated) meanwhile into a 404.
            with self._locks.locking(bucket_fd, bucket, exclusive=False):
                for _attempt in range(COMMIT_ATTEMPTS):
                    if not waiting:
                        break
                    waiting = self._round(bucket, bucket_fd, waiting)
            for entry in waiting:
                entry.error = Conflict("the key's folder kept changing under concurrent writes; try again")
        except BaseException as exc:
            for entry in batch:
                if entry.record is None and entry.error is None:
                    entry.error = exc

    def _round(self, bucket: str, bucket_fd: int, entries: list[_Entry]) -> list[_Entry]:
        """Open each entry's folder, rename them all under one mutation lock, sync each folder
        once; return the entries to try again (a concurrent delete pruned a folder, or a file
        appeared where none was)."""
        retry: list[_Entry] = []
        opened: list[tuple[_Entry, int]] = []
        try:
            for entry in entries:
                try:
                    with os_errors("the key"):
                        parent = fsops.open_parent(
                            bucket_fd, entry.upload.parts, create=True, fsync=self._locks.fsync
                        )
                except FileNotFoundError:
                    retry.append(entry)  # a concurrent delete pruned a folder on the way
                except Exception as exc:
                    entry.error = exc
                else:
                    opened.append((entry, parent))
            self._finish(self._place(bucket, bucket_fd, opened, retry))
        finally:
            for _entry, parent in opened:
                os.close(parent)
        return retry

    def _place(
        self, bucket: str, bucket_fd: int, opened: list[tuple[_Entry, int]], retry: list[_Entry]
    ) -> list[tuple[_Entry, int, FileRecord]]:
        """Rename the opened entries under the bucket's mutation lock; update its counters once."""
        placed: list[tuple[_Entry, int, FileRecord]] = []
        files = size = 0
        with self._locks.mutating(bucket):
            try:
                for entry, parent in opened:
                    try:
                        with os_errors("the key"):
                            record, more_files, more_bytes = entry.upload.place(parent)
                    except (FileNotFoundError, FileExistsError) as exc:
                        if isinstance(exc, FileNotFoundError) and not entry.upload.pending:
                            entry.error = exc
                        else:
                            retry.append(entry)  # the folder was pruned, or a file appeared
                        continue
                    except Exception as exc:
                        entry.error = exc
                        continue
                    placed.append((entry, parent, record))
                    files, size = files + more_files, size + more_bytes
            finally:
                if files or size:
                    fsops.count(bucket_fd, files, size)
        return placed

    def _finish(self, placed: list[tuple[_Entry, int, FileRecord]]) -> None:
        """Sync each folder of the placed entries once; an entry gets its record only then."""
        synced: dict[tuple[int, int], OSError | None] = {}
        for entry, parent, record in placed:
            if self._locks.fsync:
                info = os.fstat(parent)
                folder = (info.st_dev, info.st_ino)
                if folder not in synced:
                    try:
                        os.fsync(parent)
                        synced[folder] = None
                    except OSError as exc:
                        synced[folder] = exc
                if (error := synced[folder]) is not None:
                    entry.error = error
                    continue
            entry.record = record
