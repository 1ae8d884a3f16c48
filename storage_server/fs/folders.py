"""A bucket's folders as the listing walk sees them (open descriptors, never through a
symlink), and the walk that recounts a bucket."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from ..store.walk import sort_children
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
