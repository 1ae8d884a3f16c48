"""The filesystem store's staged uploads (the store contract's `Staging`): one folder each under
`.storage-server/staged/<id>/`, with `upload.json` (bucket, key, the front door's info) and its
parts (`parts.py`). Completing one commits it through an ordinary Upload (the same commit,
checks and limits as every other upload): a single part becomes the file itself, hard-linked in
as the upload's temp file (no byte copied or hashed again); several are streamed into it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..store.assemble import RUNNING, Chunks, assemble, extend
from ..store.contract import Precondition
from ..store.errors import InvalidPart, Locked, NoSuchUpload
from ..store.keys import validate_key
from ..store.localdisk import is_locked, os_errors
from ..store.records import FileRecord, PartRecord, StagedRecord, now
from .layout import Layout
from .parts import (
    PART_XATTR,
    TOKEN_XATTR,
    AppendWriter,
    PartWriter,
    chunks,
    digests_of,
    grow,
    open_part,
    part_path,
    read_record,
)
from .staging import Upload

MAX_PART = 10_000
_ID = re.compile(r"[0-9a-f]{32}")
_PART = re.compile(r"(\d{5})\.part")


class Staging(Layout):
    """Staged uploads under the layout's `staged/` folder (mixed into BlobStore)."""

    staged_expiry = 24 * 3600.0
    appends_in_place = True  # a part grows where it is (parts.AppendWriter)

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
        raise NotImplementedError  # the store's own (BlobStore)

    @property
    def staged(self) -> Path:
        return self.root / ".storage-server" / "staged"

    def begin_staged(self, bucket: str, key: str, *, info: Mapping[str, str] | None = None) -> StagedRecord:
        """See contract.Staging."""
        validate_key(key)
        os.close(self.open_bucket(bucket))  # InvalidName, BucketNotFound
        record = StagedRecord(
            id=uuid.uuid4().hex, bucket=bucket, key=key, info=dict(info or {}), created_at=now()
        )
        temp = self.tmp / f"{record.id}.staged"
        with os_errors("the staged upload"):
            self.staged.mkdir(exist_ok=True)
            temp.mkdir()
            (temp / "upload.json").write_text(record.model_dump_json(exclude={"parts"}))
            if self.fsync:
                _fsync_path(temp / "upload.json")
            os.rename(temp, self.staged / record.id)
            if self.fsync:
                _fsync_path(self.staged)
        return record

    def get_staged(self, upload_id: str) -> StagedRecord:
        folder = self._folder(upload_id)
        try:
            record = StagedRecord.model_validate_json((folder / "upload.json").read_bytes())
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):
            raise NoSuchUpload(upload_id) from None
        parts = []
        for name in sorted(names):
            if _PART.fullmatch(name):
                with contextlib.suppress(OSError, ValueError):
                    parts.append(PartRecord.model_validate_json(os.getxattr(folder / name, PART_XATTR)))
        return record.model_copy(update={"parts": parts})

    def list_staged(self, bucket: str) -> list[StagedRecord]:
        os.close(self.open_bucket(bucket))
        found = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self.staged) as entries:
            for entry in entries:
                with contextlib.suppress(NoSuchUpload):
                    record = self.get_staged(entry.name)
                    if record.bucket == bucket:
                        found.append(record)
        return sorted(found, key=lambda r: r.created_at)

    def begin_part(
        self, upload_id: str, number: int, *, exclusive: bool = False, append: bool = False
    ) -> PartWriter | AppendWriter:
        if not 1 <= number <= MAX_PART:
            raise InvalidPart(f"a part number is 1 to {MAX_PART}")
        folder = self._folder(upload_id)
        lock_fd = self._lock(upload_id) if exclusive else None
        try:
            if append and lock_fd is not None:  # in place only under the lock: no one else writes there
                grown = grow(folder, number, lock_fd, self.fsync)
                if grown is not None:
                    return grown
            writer = PartWriter(folder, number, lock_fd, self.fsync)
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        if append:
            try:
                stored = self._read_part(upload_id, number)
            except InvalidPart:
                return writer  # nothing stored under that number yet
            extend(writer, stored)
        return writer

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
        lock_fd = self._lock(upload_id)  # no part grows under the commit, no two commits at once
        try:
            record = self.get_staged(upload_id)
            if len(numbers) == 1:
                return self._commit_part(
                    record,
                    numbers[0],
                    content_type=content_type,
                    name=name,
                    metadata=metadata,
                    precondition=precondition,
                    md5=md5,
                )
            done = assemble(
                self.begin_upload,
                record,
                numbers,
                lambda number: self._read_part(upload_id, number),
                content_type=content_type,
                name=name,
                metadata=metadata,
                precondition=precondition,
                md5=md5,
            )
            self._remove(upload_id)
            return done
        finally:
            os.close(lock_fd)

    def _commit_part(
        self,
        record: StagedRecord,
        number: int,
        *,
        content_type: str,
        name: str,
        metadata: Mapping[str, str] | None,
        precondition: Precondition | None,
        md5: bool,
    ) -> FileRecord:
        """Commit one part as the file without copying it: the part file is hard-linked in as the
        upload's temp file, so the staged upload keeps its part until the commit is done (and
        after a failed one), and the file's digests are the part's own (parts.digests_of)."""
        path = part_path(self._folder(record.id), number)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            raise InvalidPart(f"part {number} was not uploaded") from None
        try:
            try:
                part = read_record(fd)
            except OSError:
                raise InvalidPart(f"part {number} was not uploaded") from None
            with os_errors("the part"):
                if os.fstat(fd).st_size != part.size:
                    os.ftruncate(fd, part.size)  # the bytes of an append cut short (the commit fsyncs)
                os.fchmod(fd, 0o644)  # a stored file's mode
            # No size given: linking the part takes no room, and the bucket's size limit is
            # checked at the commit all the same.
            upload = self.begin_upload(record.bucket, record.key, precondition=precondition, md5=md5)
            try:
                sha256, md5_hex = digests_of(path, fd, part)  # after the early checks: it may wait
                upload.adopt(path, part.size, sha256, md5_hex if md5 else None)
                done = upload.commit(
                    content_type=content_type, name=name, metadata=metadata, precondition=precondition
                )
            finally:
                upload.abort()
            self._remove(record.id)
            with contextlib.suppress(OSError):
                RUNNING.forget(os.getxattr(fd, TOKEN_XATTR).decode())
            for attr in (PART_XATTR, TOKEN_XATTR):  # the staged part's own, now on the file
                with contextlib.suppress(OSError):
                    os.removexattr(fd, attr)
            return done
        finally:
            os.close(fd)

    def _read_part(self, upload_id: str, number: int) -> Chunks:
        fd, record = open_part(self._folder(upload_id), number)
        return chunks(fd, record.size)

    def abort_staged(self, upload_id: str) -> None:
        self._folder(upload_id)
        if not (self.staged / upload_id).is_dir():
            raise NoSuchUpload(upload_id)
        self._remove(upload_id)

    def sweep_staged(self, expiry: float | None = None) -> int:
        """Remove staged uploads untouched for `expiry` seconds (default the store's) that no
        part is being written to; return how many."""
        cutoff = time.time() - (self.staged_expiry if expiry is None else expiry)
        removed = 0
        with contextlib.suppress(FileNotFoundError), os.scandir(self.staged) as entries:
            for entry in entries:
                with contextlib.suppress(FileNotFoundError):
                    newest = max(
                        [entry.stat(follow_symlinks=False).st_mtime]
                        + [c.stat(follow_symlinks=False).st_mtime for c in os.scandir(entry.path)]
                    )
                    if newest < cutoff and not _busy(entry.path):
                        self._remove(entry.name)
                        removed += 1
        return removed

    def _folder(self, upload_id: str) -> Path:
        if not _ID.fullmatch(upload_id):
            raise NoSuchUpload(upload_id)
        return self.staged / upload_id

    def _lock(self, upload_id: str) -> int:
        """Take the upload's exclusive lock (an flock on its upload.json); raise NoSuchUpload,
        Locked while another holder (in any process) has it."""
        try:
            fd = os.open(self._folder(upload_id) / "upload.json", os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise NoSuchUpload(upload_id) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise Locked() from None
        return fd

    def _remove(self, upload_id: str) -> None:
        trashed = self.trash / f"staged-{upload_id}-{uuid.uuid4().hex}"
        try:
            os.rename(self.staged / upload_id, trashed)
        except FileNotFoundError:
            raise NoSuchUpload(upload_id) from None
        shutil.rmtree(trashed, ignore_errors=True)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _busy(folder: str) -> bool:
    """Whether a part of the staged upload in `folder` is being written (a new one to its temp
    file, or one growing in place under the upload's lock) or the upload is being completed."""
    with os.scandir(folder) as entries:
        if any(is_locked(e.path) for e in entries if e.name.startswith("tmp-")):
            return True
    return is_locked(os.path.join(folder, "upload.json"))
