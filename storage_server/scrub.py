"""The scrubber: a pass re-reads every stored file and checks its bytes against the sha256 taken
at its upload, through the store contract only (any backend). A damaged file is marked in the
store (downloads of it then answer 409 `damaged`) and reported; nothing is deleted. One scrub
runs at a time per store (its scrub lock); a pass is paced to a rate and resumable (its position
is saved in the store). `python run.py scrub` runs one pass (`main`); the service runs them in
the background when STORAGE_SCRUB_PERIOD is set (server.py)."""

from __future__ import annotations

import contextlib
import hashlib
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import FrameType
from typing import TextIO

from .backends import open_store
from .settings import Settings
from .store.contract import ScrubLock, Store
from .store.damage import damage_of
from .store.errors import BucketNotFound, FileChanged, FileNotFound, StorageError
from .store.records import Damage, FileRecord, ScrubState, now

MB = 1_000_000  # the unit of STORAGE_SCRUB_RATE
PAGE = 1000  # files listed per request
READ = 1 << 20  # most bytes read per step
SAVE_EVERY = 5.0  # seconds between two saves of the position
KEEP_EVERY = 30.0  # seconds between two renewals of the scrub lock
SLACK = 1.0  # seconds of time spent elsewhere (listing, opening) that the pace may make up for


class Busy(Exception):
    """Another scrub holds the store's scrub lock."""


class _Stopped(Exception):
    """Asked to stop (or the lock was lost) in the middle of a file."""


@dataclass(frozen=True)
class Progress:
    """How far the pass is: counts of the whole pass (across resumes), the rate of this run."""

    files: int
    bytes: int
    damaged: int
    rate: float  # bytes per second read by this run
    total_bytes: int  # bytes of every bucket when this run began

    @property
    def eta(self) -> float | None:
        """Seconds left at this run's rate, if it has one."""
        left = max(self.total_bytes - self.bytes, 0)
        return left / self.rate if self.rate > 0 else 0.0 if left == 0 else None

    def line(self) -> str:
        eta = "?" if self.eta is None else str(timedelta(seconds=round(self.eta)))
        return (
            f"scrub: {self.files:,} files, {self.bytes / MB:,.1f} of {self.total_bytes / MB:,.1f} MB, "
            f"{self.rate / MB:,.1f} MB/s, ETA {eta}, {self.damaged} damaged"
        )


@dataclass
class Outcome:
    """What one run did: whether it ended the pass, what it read and what it found."""

    complete: bool = False
    resumed: bool = False  # it went on with a pass an earlier run began
    lost_lock: bool = False
    files: int = 0  # checked by this run
    bytes: int = 0  # read by this run
    seconds: float = 0.0
    damaged: list[Damage] = field(default_factory=list)  # found by this run
    pass_damaged: int = 0  # found by the whole pass, across resumes
    state: ScrubState = field(default_factory=ScrubState)

    @property
    def status(self) -> int:
        """The CLI's exit status: 1 damage found, else 0 a complete pass, 2 an incomplete one."""
        return 1 if self.pass_damaged else 0 if self.complete else 2

    def summary(self) -> str:
        rate = self.bytes / self.seconds / MB if self.seconds > 0 else 0.0
        done = "stopped; the next scrub resumes from here"
        if self.complete:
            done = "pass complete"
        elif self.lost_lock:
            done = "lost the scrub lock to another scrub"
        resumed = " (resumed)" if self.resumed else ""
        return (
            f"scrub: {done}{resumed}: {self.files:,} files, {self.bytes / MB:,.1f} MB in "
            f"{self.seconds:.1f} s ({rate:,.1f} MB/s); {self.pass_damaged} damaged"
        )


def damage_line(damage: Damage) -> str:
    """How the CLI reports a damaged file."""
    return (
        f"DAMAGED {damage.bucket}/{damage.path} expected={damage.expected_sha256} found={damage.found_sha256}"
    )


def due(state: ScrubState, period: float, when: datetime) -> bool:
    """Whether a background pass should run now: one is unfinished, none ever began, or the last
    began `period` seconds ago or more."""
    if state.started_at is not None or state.last_started_at is None:
        return True
    return when - state.last_started_at >= timedelta(seconds=period)


class Scrubber:
    """One run of the scrub over `store`, reading at most `rate` bytes per second on average.

    `stop` (set from any thread) ends the run at the next step, its position saved; so does
    `limit`, after that many files. `on_progress` gets a Progress every `progress_every` seconds
    and at the end; `on_verified` each file read whole (its record and size); `on_damaged` each
    damaged file, as it is found (or met already marked).
    """

    def __init__(
        self,
        store: Store,
        *,
        rate: float,
        stop: threading.Event | None = None,
        limit: int | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        progress_every: float = 5.0,
        on_verified: Callable[[FileRecord, int], None] | None = None,
        on_damaged: Callable[[Damage], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.rate = rate
        self.stop = stop or threading.Event()
        self.limit = limit
        self.on_progress = on_progress
        self.progress_every = progress_every
        self.on_verified = on_verified
        self.on_damaged = on_damaged
        self.clock = clock
        self.step = max(64 * 1024, min(READ, int(rate / 10)))  # ten steps a second at low rates

    def run(self) -> Outcome:
        """Run (or resume) the store's pass until it ends or is stopped; return what it did.
        Raises Busy when another scrub holds the lock, StorageError or OSError when the store
        fails (the position reached is saved first, when it can be)."""
        lock = self.store.lock_scrub()
        if lock is None:
            raise Busy("another scrub is running on this store")
        try:
            return self._run(lock)
        finally:
            lock.release()

    def _run(self, lock: ScrubLock) -> Outcome:
        self._lock = lock
        state = self.store.load_scrub_state()
        outcome = self._outcome = Outcome(resumed=state.started_at is not None)
        if state.started_at is None:
            state = ScrubState(
                started_at=now(),
                last_started_at=state.last_started_at,
                last_completed_at=state.last_completed_at,
            )
        self.state = state  # the position: the last file checked, and the pass's counts
        buckets = self.store.list_buckets()
        self._total = sum(b.total_size for b in buckets)
        self._start = self._due = self._saved = self._kept = self._shown = self.clock()
        try:
            for bucket in buckets:
                if state.bucket is not None and bucket.name < state.bucket:
                    continue  # checked by an earlier run of this pass
                self._bucket(bucket.name, state.after if bucket.name == state.bucket else None)
        except _Stopped:
            return self._end(None if outcome.lost_lock else self.state)
        except (StorageError, OSError):
            with contextlib.suppress(StorageError, OSError):
                self.store.save_scrub_state(self.state)
            raise
        outcome.complete = True
        return self._end(ScrubState(last_started_at=self.state.started_at, last_completed_at=now()))

    def _bucket(self, name: str, after: str | None) -> None:
        """Check the files of one bucket after the key `after`, moving the position along."""
        while True:
            try:
                page = self.store.list_files(name, limit=PAGE, after=after.encode() if after else None)
            except BucketNotFound:
                return  # deleted meanwhile
            for record in page.files:
                damage, size = self._check(record)
                state = self.state
                self.state = state.model_copy(
                    update={
                        "bucket": name,
                        "after": record.path,
                        "files": state.files + 1,
                        "bytes": state.bytes + size,
                        "damaged": state.damaged + (damage is not None),
                    }
                )
                self._outcome.files += 1
                if damage is not None:
                    self._outcome.damaged.append(damage)
                    if self.on_damaged is not None:
                        self.on_damaged(damage)
                self._tick()
            if page.next_after is None:
                return
            after = page.next_after

    def _check(self, listed: FileRecord) -> tuple[Damage | None, int]:
        """Re-read one file; its damage (if any) and the bytes read."""
        if listed.damaged is not None:
            return self._known(listed), 0
        if not listed.sha256:
            return None, 0  # no checksum to hold its bytes against (an object put in by hand)
        try:
            reader = self.store.open_file(listed.bucket, listed.path, stream=True)
        except (FileNotFound, BucketNotFound):
            return None, 0  # deleted since it was listed
        record, digest, size = reader.record, hashlib.sha256(), 0
        try:
            if record.damaged is not None:
                return self._known(record), 0
            while chunk := reader.read(self.step):
                digest.update(chunk)
                size += len(chunk)
                self._outcome.bytes += len(chunk)
                self._pace(len(chunk))
        except FileChanged:
            return None, size  # replaced while it was read: the new version is not this pass's
        finally:
            reader.close()
        if self.on_verified is not None:
            self.on_verified(record, size)
        found = digest.hexdigest()
        if found == record.sha256:
            return None, size
        if not self.store.mark_damaged(record, found_sha256=found, found_size=size):
            return None, size  # replaced or deleted since it was read
        return damage_of(record, found, size, now()), size

    def _known(self, record: FileRecord) -> Damage | None:
        """A file met already marked: still damaged, and kept in the store's list of them."""
        assert record.damaged is not None
        if not self.store.mark_damaged(record, found_sha256=record.damaged, found_size=record.size):
            return None
        return damage_of(record, record.damaged, record.size, now())

    def _pace(self, size: int) -> None:
        """Wait as long as keeps the average at `rate` (crediting at most SLACK seconds spent
        elsewhere); a stop cuts the wait short and ends the run."""
        self._due += size / self.rate
        moment = self.clock()
        self._due = max(self._due, moment - SLACK)
        if self._due > moment:
            self.stop.wait(self._due - moment)
        if self.stop.is_set():
            raise _Stopped
        self._beat()

    def _beat(self) -> None:
        """Show progress and renew the lock, as they fall due (also inside a long file)."""
        moment = self.clock()
        if self.on_progress is not None and moment - self._shown >= self.progress_every:
            self._shown = moment
            self.on_progress(self._progress())
        if moment - self._kept >= KEEP_EVERY:
            self._kept = moment
            if not self._lock.keep():
                self._outcome.lost_lock = True
                raise _Stopped

    def _tick(self) -> None:
        """After each file: progress, the lock, and the position saved, as they fall due."""
        self._beat()
        moment = self.clock()
        if moment - self._saved >= SAVE_EVERY:
            self._saved = moment
            self.store.save_scrub_state(self.state)
        if self.stop.is_set() or (self.limit is not None and self._outcome.files >= self.limit):
            raise _Stopped

    def _progress(self) -> Progress:
        seconds = self.clock() - self._start
        rate = self._outcome.bytes / seconds if seconds > 0 else 0.0
        return Progress(self.state.files, self.state.bytes, self.state.damaged, rate, self._total)

    def _end(self, saved: ScrubState | None) -> Outcome:
        """Save `saved` (unless None: the lock was lost) and return the outcome."""
        outcome = self._outcome
        outcome.seconds = self.clock() - self._start
        outcome.pass_damaged = self.state.damaged
        outcome.state = saved or self.state
        if saved is not None:
            self.store.save_scrub_state(saved)
        if self.on_progress is not None:
            self.on_progress(self._progress())
        return outcome


def main(config: Settings, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """`python run.py scrub`: one pass (or the rest of an interrupted one) over the configured
    store; damaged files on `out`, progress and a summary on `err`. Return the exit status: 0
    clean, 1 damage found, 2 cannot run or did not finish (SIGINT or SIGTERM stop it cleanly)."""
    store = open_store(config)
    try:
        store.prepare()
    except StorageError as exc:
        print(f"scrub: cannot run: {exc}", file=err)
        return 2
    stop = threading.Event()

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)
    scrubber = Scrubber(
        store,
        rate=config.scrub_rate * MB,
        stop=stop,
        on_progress=lambda progress: print(progress.line(), file=err, flush=True),
        on_damaged=lambda damage: print(damage_line(damage), file=out, flush=True),
    )
    print(f"scrub: {store}, at most {config.scrub_rate:g} MB/s", file=err, flush=True)
    try:
        outcome = scrubber.run()
    except Busy:
        print("scrub: cannot run: another scrub holds this store's scrub lock; try again later", file=err)
        return 2
    except (StorageError, OSError) as exc:
        print(f"scrub: stopped: {exc}; the next scrub resumes from the last position saved", file=err)
        return 2
    print(outcome.summary(), file=err, flush=True)
    return outcome.status
