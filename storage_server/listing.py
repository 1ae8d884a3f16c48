"""Walk a bucket's folders lazily, yielding keys in UTF-8 byte order (S3 ListObjectsV2 order),
one folder's names in memory at a time."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

from .errors import InvalidKey
from .keys import validate_key

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Entry:
    """A file (`folder` False) or, with a delimiter, a common prefix ending in "/"."""

    key: str
    folder: bool
    dir_fd: int  # the open folder holding it; valid only until the walk moves on
    name: str


def _children(dir_fd: int) -> list[tuple[bytes, str, bool]]:
    """(sort key, name, is folder) of a folder's files and subfolders, sorted so that walking
    them yields keys in byte order: a folder sorts as its name plus "/". Symlinks, other special
    files and names that are not valid key segments are left out."""
    found = []
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            try:
                validate_key(entry.name)
                encoded = entry.name.encode("utf-8")
                if entry.is_dir(follow_symlinks=False):
                    found.append((encoded + b"/", entry.name, True))
                elif entry.is_file(follow_symlinks=False):
                    found.append((encoded, entry.name, False))
            except (InvalidKey, OSError):
                continue
    found.sort()
    return found


def walk(dir_fd: int, base: str, partial: str, delimited: bool, after: bytes | None) -> Iterator[Entry]:
    """Yield the entries below `dir_fd` (whose keys start with `base`) after the key `after`.

    `partial` filters the names of this folder only; with `delimited`, subfolders are yielded
    once as common prefixes instead of being descended into.
    """
    for sort_key, name, is_dir in _children(dir_fd):
        if not name.startswith(partial):
            continue
        full = base.encode("utf-8") + sort_key
        if is_dir and not delimited:
            # Every key below starts with `full`: skip the subtree if the cursor is past all of it.
            if after is not None and after > full and not after.startswith(full):
                continue
            try:
                child = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue  # removed or replaced since the folder was read
            with contextlib.closing(_Fd(child)):
                yield from walk(child, f"{base}{name}/", "", False, after)
        elif after is None or full > after:
            yield Entry(base + name + ("/" if is_dir else ""), is_dir, dir_fd, name)


def sizes(dir_fd: int) -> Iterator[int]:
    """The size of every regular file below the folder, for recounting a bucket."""
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.is_dir(follow_symlinks=False):
                    child = os.open(entry.name, DIR_FLAGS, dir_fd=dir_fd)
                    with contextlib.closing(_Fd(child)):
                        yield from sizes(child)
                elif entry.is_file(follow_symlinks=False):
                    yield entry.stat(follow_symlinks=False).st_size


class _Fd:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        os.close(self.fd)
