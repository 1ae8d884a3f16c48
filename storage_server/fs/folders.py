"""A bucket's folders as the listing walk sees them (open descriptors, never through a
symlink), and the walk that recounts a bucket."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ..store.errors import InvalidKey
from ..store.keys import validate_prefix
from ..store.records import FileRecord, Page
from ..store.walk import sort_children, walk
from . import ops
from .ops import DIR


class DirFolder:
    """A folder of the filesystem store, open as a descriptor (never through a symlink)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def children(self, partial: str) -> list[tuple[bytes, str, bool]]:
        found = []
        with os.scandir(self.fd) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        found.append((entry.name, True))
                    elif entry.is_file(follow_symlinks=False):
                        found.append((entry.name, False))
        return sort_children(found)

    @contextlib.contextmanager
    def descend(self, name: str) -> Iterator[DirFolder | None]:
        try:
            child = os.open(name, DIR, dir_fd=self.fd)
        except OSError:
            yield None  # removed or replaced since the folder was read
            return
        try:
            yield DirFolder(child)
        finally:
            os.close(child)


def sizes(dir_fd: int) -> Iterator[int]:
    """The size of every regular file below the folder, for recounting a bucket."""
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    child = os.open(entry.name, DIR, dir_fd=dir_fd)
                    try:
                        yield from sizes(child)
                    finally:
                        os.close(child)
                elif entry.is_file(follow_symlinks=False):
                    yield entry.stat(follow_symlinks=False).st_size


def list_page(
    bucket_fd: int, bucket: str, prefix: str, delimited: bool, limit: int, after: bytes | None
) -> Page:
    """One page of the listing of the open bucket folder (see BlobStore.list_files)."""
    try:
        folders, partial = validate_prefix(prefix)
        chain = ops.open_chain(bucket_fd, folders)
    except InvalidKey:
        folders, partial, chain = (), "", []
    except OSError as exc:
        folders, partial, chain = (), "", []
        if exc.errno not in ops.ABSENT:
            raise
    try:
        base = "".join(f"{f}/" for f in folders)
        found = walk(DirFolder(chain[-1]), base, partial, delimited, after) if chain else iter(())
        files: list[FileRecord] = []
        common: list[str] = []
        taken, last = 0, None
        for entry in found:
            if taken == limit:
                return Page(files=files, folders=common, next_after=last)
            taken, last = taken + 1, entry.key
            if entry.folder:
                common.append(entry.key)
            elif (record := ops.record_at(entry.parent.fd, entry.name, bucket, entry.key)) is not None:
                files.append(record)
        return Page(files=files, folders=common)
    finally:
        for fd in chain:
            os.close(fd)
