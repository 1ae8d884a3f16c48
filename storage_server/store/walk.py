"""Walk a bucket's folders lazily, yielding keys in UTF-8 byte order (S3 ListObjectsV2 order),
one folder's names in memory at a time. Both stores walk this way: an engine's own flat listing
is not always in byte order (SeaweedFS lists folders depth-first)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import InvalidKey
from .keys import validate_key


class Folder(Protocol):
    """One folder of a bucket, as the walk needs it."""

    def children(self, partial: str) -> list[tuple[bytes, str, bool]]:
        """(sort key, name, is folder) of the files and subfolders whose names start with
        `partial`, as `sort_children` orders them."""

    def descend(self, name: str) -> contextlib.AbstractContextManager[Folder | None]:
        """The subfolder `name` (None if it is gone), for the duration of the `with`."""


@dataclass(frozen=True)
class Entry:
    """A file (`folder` False) or, with a delimiter, a common prefix ending in "/"."""

    key: str
    folder: bool
    parent: Any  # the Folder holding it; valid only until the walk moves on
    name: str


def sort_children(found: list[tuple[str, bool]]) -> list[tuple[bytes, str, bool]]:
    """Order a folder's (name, is folder) pairs so that walking them yields keys in byte order:
    a folder sorts as its name plus "/". Names that are not valid key segments are left out."""
    ordered = []
    for name, is_dir in found:
        try:
            validate_key(name)
        except InvalidKey:
            continue
        ordered.append((name.encode("utf-8") + (b"/" if is_dir else b""), name, is_dir))
    ordered.sort()
    return ordered


def walk(folder: Folder, base: str, partial: str, delimited: bool, after: bytes | None) -> Iterator[Entry]:
    """Yield the entries below `folder` (whose keys start with `base`) after the key `after`.

    `partial` filters the names of this folder only; with `delimited`, subfolders are yielded
    once as common prefixes instead of being descended into.
    """
    for sort_key, name, is_dir in folder.children(partial):
        if not name.startswith(partial):
            continue
        full = base.encode("utf-8") + sort_key
        if is_dir and not delimited:
            # Every key below starts with `full`: skip the subtree if the cursor is past all of it.
            if after is not None and after > full and not after.startswith(full):
                continue
            with folder.descend(name) as child:
                if child is not None:
                    yield from walk(child, f"{base}{name}/", "", False, after)
        elif after is None or full > after:
            yield Entry(base + name + ("/" if is_dir else ""), is_dir, folder, name)


def first(entries: Iterator[Entry], limit: int) -> tuple[list[Entry], bool]:
    """The first `limit` entries of a walk, and whether more follow."""
    taken: list[Entry] = []
    for entry in entries:
        if len(taken) == limit:
            return taken, True
        taken.append(entry)
    return taken, False
