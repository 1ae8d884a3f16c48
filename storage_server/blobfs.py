"""The filesystem store: buckets are folders under the root, files are plain files, and each
record's metadata rides in a user xattr, so it becomes visible in the same rename as the bytes.

It implements the store contract (`store/contract.py`) and raises its StorageErrors (and lets
unexpected OSErrors through). Its parts live in `fs/`: the layout and locks (`fs/layout.py`, see
there), the primitives (`fs/ops.py`), the reader and the atomic upload (`fs/staging.py`), damage
marks and the scrub's lock and state (`fs/integrity.py`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid

from .fs import ops as fsops
from .fs.commit import COMMIT_ATTEMPTS
from .fs.folders import list_page, sizes
from .fs.integrity import Integrity
from .fs.layout import INTERNAL_DIR
from .fs.staged import Staging
from .fs.staging import BlobReader, Upload
from .settings import Settings
from .store.contract import Precondition
from .store.errors import BucketNotFound, Conflict, Damaged, FileNotFound
from .store.keys import is_bucket_name, validate_bucket_name, validate_key
from .store.localdisk import os_errors, sweep_folder
from .store.records import BucketChanges, BucketRecord, FileRecord, Page, now

__all__ = ["INTERNAL_DIR", "BlobReader", "BlobStore", "Upload"]

SWEEP_GRACE = 60.0  # seconds; see BlobStore.sweep


class BlobStore(Integrity, Staging):
    """Buckets and files under `root`. Synchronous and blocking: call it from worker threads."""

    @classmethod
    def for_settings(cls, config: Settings) -> BlobStore:
        store = cls(config.path, fsync=config.fsync, reserve=config.min_free_bytes)
        store.staged_expiry = config.staged_expiry
        return store

    def __repr__(self) -> str:
        return f"files under {self.root}"

    # -- start-up, health, recovery -------------------------------------------------------------

    def sweep(self, grace: float = SWEEP_GRACE) -> int:
        """Remove temp files and trashed buckets that no live process owns; return how many.

        A live upload or bucket delete holds an flock on its entry; `grace` spares entries so
        new that their creator may not have locked them yet. With no worker running, 0 is safe.
        Staged uploads untouched for the store's staged expiry go too.
        """
        removed = sweep_folder(self.tmp, grace) + sweep_folder(self.trash, grace, remove_dir=True)
        return removed + self.sweep_staged()

    def recover(self) -> list[int]:
        """Recount every bucket if a worker died without unregistering (it may have been between
        a rename and its counter update); return the PIDs of such workers."""
        dead = self.dead_workers()
        if dead:
            for bucket in self.list_buckets():
                with contextlib.suppress(BucketNotFound):
                    self.recount(bucket.name)
        return dead

    def recount(self, name: str) -> BucketRecord:
        """Recompute the bucket's file and byte counters by walking it."""
        with self.locked_bucket(name, exclusive=False) as fd, self.mutating(name):
            found = list(sizes(fd))
            fsops.set_stats(fd, len(found), sum(found))
            return fsops.read_bucket(fd, name)

    # -- buckets ----------------------------------------------------------------------------------

    def create_bucket(
        self,
        name: str,
        *,
        public: bool = False,
        description: str | None = None,
        file_size_limit: int | None = None,
        allowed_mime_types: list[str] | None = None,
    ) -> tuple[BucketRecord, bool]:
        """Create a bucket and return it with True, or return the existing one untouched with False.

        Raises InvalidName. The folder appears with its metadata in one renameat2.
        """
        validate_bucket_name(name)
        when = now()
        bucket = BucketRecord(
            name=name,
            public=public,
            description=description,
            file_size_limit=file_size_limit,
            allowed_mime_types=allowed_mime_types,
            created_at=when,
            updated_at=when,
        )
        staged = self.tmp / f"{uuid.uuid4().hex}.bucket"
        created = False
        with self.root_fd() as root_fd, os_errors("the bucket"):
            try:
                os.mkdir(staged)
                os.setxattr(staged, fsops.BUCKET_XATTR, fsops.bucket_meta(bucket))
                fsops.rename_noreplace(staged, root_fd, name)
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

    def list_buckets(self) -> list[BucketRecord]:
        """Every bucket, sorted by name."""
        buckets = []
        with self.root_fd() as root_fd:
            names = sorted(n for n in os.listdir(root_fd) if is_bucket_name(n))
        for name in names:
            with contextlib.suppress(BucketNotFound):
                buckets.append(self.get_bucket(name))
        return buckets

    def check_bucket(self, name: str) -> None:
        """Raise InvalidName or BucketNotFound unless the bucket exists."""
        os.close(self.open_bucket(name))

    def get_bucket(self, name: str, *, counted: bool = True) -> BucketRecord:
        """The bucket's record (its counters are always at hand here); raise InvalidName or
        BucketNotFound."""
        fd = self.open_bucket(name)
        try:
            return fsops.read_bucket(fd, name)
        finally:
            os.close(fd)

    def update_bucket(self, name: str, changes: BucketChanges) -> BucketRecord:
        """Apply `changes` (public, description) and return the bucket; raise BucketNotFound."""
        fields = changes.as_dict()
        with self.locked_bucket(name, exclusive=True) as fd:
            bucket = fsops.read_bucket(fd, name)
            if all(getattr(bucket, field) == value for field, value in fields.items()):
                return bucket
            bucket = bucket.model_copy(update={**fields, "updated_at": now()})
            with os_errors("the bucket"):
                os.setxattr(fd, fsops.BUCKET_XATTR, fsops.bucket_meta(bucket))
                if self.fsync:
                    os.fsync(fd)
            return bucket

    def delete_bucket(self, name: str) -> None:
        """Delete the bucket and every file in it; raise InvalidName or BucketNotFound.

        Under an exclusive lock the bucket is renamed into the trash, so it disappears at once
        and no upload committing afterwards can recreate it; the files are removed after.
        """
        trashed = self.trash / f"{name}.{uuid.uuid4().hex}"
        with self.locked_bucket(name, exclusive=True), self.root_fd() as root_fd:
            os.rename(name, trashed, src_dir_fd=root_fd)
            if self.fsync:
                os.fsync(root_fd)
            shutil.rmtree(trashed, ignore_errors=True)  # still locked: sweep() keeps off

    # -- files ------------------------------------------------------------------------------------

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
        """Start an upload of `key` (of `size` bytes, when known).

        Raises InvalidKey, InvalidName, BucketNotFound; Conflict when a file or folder stands in
        the key's way; InsufficientStorage when `size` bytes do not fit; PreconditionFailed
        when `precondition` already fails (it is checked again at commit).
        """
        parts = validate_key(key)
        self.check_space(room or size or 0)
        bucket_fd = self.open_bucket(bucket)
        try:
            limits = fsops.read_limits(bucket_fd)
            limits.check(size, content_type)
            current = fsops.check_way(bucket_fd, parts)
            if precondition is not None:
                precondition(current)
            with os_errors("the upload"):
                created = current.created_at if current is not None else None
                return Upload(self, bucket, parts, bucket_fd, limits=limits, md5=md5, created=created)
        except BaseException:
            os.close(bucket_fd)
            raise

    def open_file(self, bucket: str, key: str, *, stream: bool = False) -> BlobReader:
        """Open a stored file; raise InvalidKey, InvalidName, BucketNotFound or FileNotFound."""
        parts = validate_key(key)
        bucket_fd = self.open_bucket(bucket)
        try:
            parent = fsops.open_parent(bucket_fd, parts, create=False, fsync=self.fsync)
            try:
                fd = os.open(parts[-1], fsops.FILE, dir_fd=parent)
            finally:
                os.close(parent)
        except OSError as exc:
            if exc.errno in fsops.ABSENT:
                raise FileNotFound(bucket, key) from None
            raise
        finally:
            os.close(bucket_fd)
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise FileNotFound(bucket, key)
            record = fsops.file_record(fd, info, bucket, "/".join(parts))
            self.cached.remember(info, record)
            return BlobReader(fd, record)
        except BaseException:
            os.close(fd)
            raise

    def open_cached(self, bucket: str, key: str, *, head: int) -> tuple[BlobReader, bytes] | None:
        """Open a hot file and read its first `head` bytes without waiting, or None (fs/cached.py)."""
        found = self.cached.open(validate_bucket_name(bucket), validate_key(key), head)
        if found is None:
            return None
        reader = BlobReader(found[0], found[1])
        reader.offset = len(found[2])
        return reader, found[2]

    def delete_file(self, bucket: str, key: str, *, precondition: Precondition | None = None) -> bool:
        """Delete a file and the folders it leaves empty; return False if there was none.

        Raises InvalidKey, InvalidName, BucketNotFound, PreconditionFailed.
        """
        parts = validate_key(key)
        with self.locked_bucket(bucket, exclusive=False) as bucket_fd:
            try:
                chain = fsops.open_chain(bucket_fd, parts[:-1])
            except OSError as exc:
                if exc.errno not in fsops.ABSENT:
                    raise
                if precondition is not None:
                    precondition(None)
                return False
            try:
                with self.mutating(bucket):
                    current = fsops.current(chain[-1], parts[-1])
                    if precondition is not None:
                        precondition(current.record)
                    if not current.present or current.folder:
                        return False
                    os.unlink(parts[-1], dir_fd=chain[-1])
                    fsops.count(bucket_fd, -1 if current.counted else 0, -current.size)
                if self.fsync:
                    os.fsync(chain[-1])
                fsops.prune(chain, parts)
                return True
            finally:
                for fd in chain:
                    os.close(fd)

    def move_file(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        precondition: Precondition | None = None,
    ) -> FileRecord:
        """Rename a file to another key, in the same or another bucket, in one atomic step.

        The destination is replaced if present (unless `precondition` refuses). Raises InvalidKey,
        InvalidName, BucketNotFound, FileNotFound, Conflict, PreconditionFailed.
        """
        src_parts, dst_parts = validate_key(src_key), validate_key(dst_key)
        with contextlib.ExitStack() as stack:
            src_fd = stack.enter_context(self.locked_bucket(src_bucket, exclusive=False))
            dst_fd = (
                src_fd
                if dst_bucket == src_bucket
                else stack.enter_context(self.locked_bucket(dst_bucket, exclusive=False))
            )
            try:
                src_chain = fsops.open_chain(src_fd, src_parts[:-1])
            except OSError as exc:
                if exc.errno in fsops.ABSENT:
                    raise FileNotFound(src_bucket, src_key) from None
                raise
            for fd in src_chain:
                stack.callback(os.close, fd)
            for _attempt in range(COMMIT_ATTEMPTS):
                try:
                    with os_errors("the destination"):
                        dst_parent = fsops.open_parent(dst_fd, dst_parts, create=True, fsync=self.fsync)
                except FileNotFoundError:
                    continue
                try:
                    with os_errors("the destination"), contextlib.ExitStack() as locks:
                        for name in sorted({src_bucket, dst_bucket}):
                            locks.enter_context(self.mutating(name))
                        source = fsops.current(src_chain[-1], src_parts[-1]).record
                        if source is None:
                            raise FileNotFound(src_bucket, src_key)
                        if (src_bucket, src_parts) == (dst_bucket, dst_parts):
                            return source.model_copy(
                                update={"bucket": src_bucket, "path": "/".join(src_parts)}
                            )
                        if source.damaged is not None:
                            raise Damaged(src_bucket, src_key)
                        fsops.read_limits(dst_fd).check(source.size, source.content_type)
                        target = fsops.current(dst_parent, dst_parts[-1])
                        if target.folder:
                            raise Conflict("a folder stands where the destination needs a file")
                        if precondition is not None:
                            precondition(target.record)
                        os.rename(
                            src_parts[-1], dst_parts[-1], src_dir_fd=src_chain[-1], dst_dir_fd=dst_parent
                        )
                        moved = source.model_copy(update={"bucket": dst_bucket, "path": "/".join(dst_parts)})
                        fsops.count(src_fd, -1, -source.size)
                        fsops.count(dst_fd, 0 if target.counted else 1, source.size - target.size)
                    if self.fsync:
                        os.fsync(dst_parent)
                        os.fsync(src_chain[-1])
                    fsops.prune(src_chain, src_parts)
                    return moved
                except FileNotFoundError:
                    continue
                finally:
                    os.close(dst_parent)
        raise Conflict("the destination's folder kept changing under concurrent writes; try again")

    def copy_file(
        self,
        src_bucket: str,
        src_key: str,
        dst_bucket: str,
        dst_key: str,
        *,
        precondition: Precondition | None = None,
    ) -> FileRecord:
        """Copy a file (bytes and metadata) to another key; same errors as move_file."""
        reader = self.open_file(src_bucket, src_key)
        try:
            source = reader.record
            if source.damaged is not None:
                raise Damaged(src_bucket, src_key)
            upload = self.begin_upload(
                dst_bucket,
                dst_key,
                size=source.size,
                content_type=source.content_type,
                precondition=precondition,
            )
            try:
                upload.copy_from(reader)
                return upload.commit(
                    content_type=source.content_type,
                    name=source.name,
                    metadata=source.metadata,
                    precondition=precondition,
                )
            finally:
                upload.abort()
        finally:
            reader.close()

    def list_files(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimited: bool = False,
        limit: int = 1000,
        after: bytes | None = None,
    ) -> Page:
        """One page of the files (and, when `delimited`, folders) whose keys start with `prefix`,
        in UTF-8 byte order, after the key whose UTF-8 bytes are `after`. A prefix no key can have
        lists nothing. Raises InvalidName, BucketNotFound."""
        bucket_fd = self.open_bucket(bucket)
        try:
            return list_page(bucket_fd, bucket, prefix, delimited, limit, after)
        finally:
            os.close(bucket_fd)
