"""The filesystem store's side of the integrity contract. A damaged version is marked in its own
metadata xattr (`damaged`: the sha256 found), so a re-upload, which renames a new inode into
place, clears the mark by construction; an entry in `.storage-server/damaged/` lists it for the
admin route. The scrub holds an flock on `.storage-server/scrub.lock` and keeps its position in
`.storage-server/scrub.json`."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import uuid
from pathlib import Path

from ..store.damage import damage_of, entry_name, reconcile
from ..store.errors import BucketNotFound, InvalidKey, InvalidName
from ..store.keys import validate_key
from ..store.localdisk import write_all
from ..store.records import Damage, FileRecord, ScrubState, now
from . import ops as fsops
from .layout import Layout


class FlockScrubLock:
    """An flock on the store's scrub lock file, held while its descriptor is open."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def keep(self) -> bool:
        return self._fd is not None  # an flock lasts as long as its holder

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class Integrity(Layout):
    """Marks on damaged files, their index, the scrub's lock and state, under the store's root."""

    def mark_damaged(self, record: FileRecord, *, found_sha256: str, found_size: int) -> bool:
        """Mark the version `record` describes as damaged and list it; False when the key no
        longer holds that version. Raises InvalidKey.

        Under the bucket's mutation lock, as a commit renames there: the version checked is the
        one marked. The entry is written before the mark, so a crash in between leaves only an
        entry that the listing drops.
        """
        parts = validate_key(record.path)
        try:
            with self.locked_bucket(record.bucket, exclusive=False) as bucket_fd:
                try:
                    parent = fsops.open_parent(bucket_fd, parts, create=False)
                except OSError as exc:
                    if exc.errno in fsops.ABSENT:
                        return False
                    raise
                try:
                    with self.mutating(record.bucket):
                        return self._mark(parent, parts[-1], record, found_sha256, found_size)
                finally:
                    os.close(parent)
        except BucketNotFound:
            return False

    def _mark(self, parent: int, leaf: str, record: FileRecord, found: str, size: int) -> bool:
        try:
            fd = os.open(leaf, fsops.FILE, dir_fd=parent)
        except OSError as exc:
            if exc.errno in fsops.ABSENT:
                return False
            raise
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return False
            current = fsops.file_record(fd, info, record.bucket, record.path)
            if (current.sha256, current.updated_at) != (record.sha256, record.updated_at):
                return False
            entry = self.damaged / entry_name(record.bucket, record.path)
            if current.damaged == found:
                if not entry.exists():
                    self._write_entry(entry, damage_of(current, found, size, now()))
                return True
            self._write_entry(entry, damage_of(current, found, size, now()))
            os.setxattr(fd, fsops.FILE_XATTR, fsops.file_meta(current.model_copy(update={"damaged": found})))
            if self.fsync:
                os.fsync(fd)
            return True
        finally:
            os.close(fd)

    def list_damaged(self, bucket: str | None = None) -> list[Damage]:
        """The files marked damaged (of `bucket`, when given), sorted by bucket and path; stale
        entries are removed. Raises InvalidName, BucketNotFound."""
        if bucket is not None:
            os.close(self.open_bucket(bucket))
        found = []
        for path in sorted(self.damaged.iterdir()):
            try:
                entry = Damage.model_validate_json(path.read_bytes())
            except FileNotFoundError:
                continue
            except ValueError:
                path.unlink(missing_ok=True)  # a torn write of a crash: the scrub finds it again
                continue
            if bucket is not None and entry.bucket != bucket:
                continue
            kept = self._reconcile(path, entry)
            if kept is not None:
                found.append(kept)
        return sorted(found, key=lambda d: (d.bucket, d.path.encode()))

    def _reconcile(self, path: Path, entry: Damage) -> Damage | None:
        """The entry checked against the file at its key, under the lock marks are made under;
        removed when stale."""
        try:
            with self.locked_bucket(entry.bucket, exclusive=False), self.mutating(entry.bucket):
                kept = reconcile(entry, self._current(entry.bucket, entry.path))
                if kept is None:
                    path.unlink(missing_ok=True)
                elif kept != entry:
                    self._write_entry(path, kept)
                return kept
        except (BucketNotFound, InvalidName):
            path.unlink(missing_ok=True)  # nothing marks a file of a missing bucket
            return None

    def _current(self, bucket: str, key: str) -> FileRecord | None:
        bucket_fd = self.open_bucket(bucket)
        try:
            parts = validate_key(key)
            parent = fsops.open_parent(bucket_fd, parts, create=False)
        except (OSError, InvalidKey):
            return None
        finally:
            os.close(bucket_fd)
        try:
            return fsops.record_at(parent, parts[-1], bucket, key)
        finally:
            os.close(parent)

    def _write_entry(self, path: Path, entry: Damage) -> None:
        self._replace(path, entry.model_dump_json().encode())

    def _replace(self, path: Path, data: bytes) -> None:
        """Replace the file at `path` with `data` at once (a temp file renamed over it)."""
        temp = self.tmp / f"{uuid.uuid4().hex}.part"
        fd = self.open_temp(temp)
        try:
            write_all(fd, data)
            if self.fsync:
                os.fsync(fd)
            os.replace(temp, path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        finally:
            os.close(fd)

    def lock_scrub(self) -> FlockScrubLock | None:
        """Take the scrub lock (an flock, non-blocking); None when another scrub holds it."""
        fd = os.open(self.scrub_lock, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return None
            raise
        return FlockScrubLock(fd)

    def load_scrub_state(self) -> ScrubState:
        """The saved scrub state; an empty one when none was saved or it does not parse."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            return ScrubState.model_validate_json(self.scrub_state.read_bytes())
        return ScrubState()

    def save_scrub_state(self, state: ScrubState) -> None:
        """Replace the saved scrub state at once."""
        self._replace(self.scrub_state, state.model_dump_json().encode())
