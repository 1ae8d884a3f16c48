"""HTTP conditional requests and byte ranges (RFC 9110 sections 13 and 14), judged against a
file's record: its strong ETag (from the stored sha256) and Last-Modified (its updated_at)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from ..store.errors import PreconditionFailed
from ..store.records import FileRecord

_ETAG = re.compile(r'\s*(W/)?("[\x21\x23-\x7e\x80-\xff]*")\s*(?:,|$)')
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


class RangeNotSatisfiable(Exception):
    """No byte of the requested range exists; answer 416 with `Content-Range: bytes */size`."""


@dataclass(frozen=True)
class Tags:
    """An If-Match / If-None-Match value: `*` or a list of entity tags."""

    any: bool
    tags: tuple[tuple[bool, str], ...]  # (weak, opaque tag with its quotes)

    def matches(self, etag: str, *, weak: bool) -> bool:
        return self.any or any((weak or not is_weak) and tag == etag for is_weak, tag in self.tags)


def parse_tags(value: str | None) -> Tags | None:
    """Parse an If-Match / If-None-Match header; a malformed one matches nothing."""
    if value is None:
        return None
    if value.strip() == "*":
        return Tags(True, ())
    tags, pos = [], 0
    while pos < len(value):
        found = _ETAG.match(value, pos)
        if not found:
            break
        tags.append((found.group(1) is not None, found.group(2)))
        pos = found.end()
    return Tags(False, tuple(tags))


def parse_date(value: str | None) -> datetime | None:
    """An HTTP-date, or None when absent or invalid (RFC 9110: then the header is ignored)."""
    if not value:
        return None
    try:
        date = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return date if date.tzinfo is not None else date.replace(tzinfo=UTC)


def etag(record: FileRecord) -> str:
    """The file's strong entity tag, as sent in the ETag header: its sha256, quoted."""
    return f'"{record.sha256}"'


def last_modified(record: FileRecord) -> datetime:
    """The record's Last-Modified, at the one-second precision an HTTP-date has."""
    return record.updated_at.replace(microsecond=0)


@dataclass(frozen=True)
class Conditions:
    """The conditional headers of one request."""

    if_match: Tags | None = None
    if_none_match: Tags | None = None
    if_modified_since: datetime | None = None
    if_unmodified_since: datetime | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str]) -> Conditions:
        return cls(
            parse_tags(headers.get("If-Match")),
            parse_tags(headers.get("If-None-Match")),
            parse_date(headers.get("If-Modified-Since")),
            parse_date(headers.get("If-Unmodified-Since")),
        )

    @property
    def guards_writes(self) -> bool:
        """Whether any header here can stop a write."""
        return any(v is not None for v in (self.if_match, self.if_none_match, self.if_unmodified_since))

    def _fails_write_side(self, current: FileRecord | None) -> bool:
        """Steps 1-2 of RFC 9110 13.2.2: If-Match, else If-Unmodified-Since."""
        if self.if_match is not None:
            return current is None or not self.if_match.matches(etag(current), weak=False)
        if self.if_unmodified_since is not None and current is not None:
            return last_modified(current) > self.if_unmodified_since
        return False

    def check_write(self, current: FileRecord | None) -> None:
        """For an upload, copy, move or delete: raise PreconditionFailed unless the conditions
        hold for the key's current file (None when it has none)."""
        if self._fails_write_side(current):
            raise PreconditionFailed(
                "the file's current version does not match If-Match / If-Unmodified-Since"
            )
        none_match = self.if_none_match
        if none_match is not None and current is not None and none_match.matches(etag(current), weak=True):
            raise PreconditionFailed("the file exists (If-None-Match)")

    def check_read(self, record: FileRecord) -> int | None:
        """For a GET or HEAD: 412, 304, or None to answer normally."""
        if self._fails_write_side(record):
            return 412
        if self.if_none_match is not None:
            return 304 if self.if_none_match.matches(etag(record), weak=True) else None
        if self.if_modified_since is not None and last_modified(record) <= self.if_modified_since:
            return 304
        return None


def byte_range(header: str | None, if_range: str | None, record: FileRecord) -> tuple[int, int] | None:
    """The (first, last) byte positions to send, or None for the whole file.

    Invalid or multi-range headers are answered with the whole file (RFC 9110 allows it); so is
    a Range whose If-Range does not match the current version. Raises RangeNotSatisfiable.
    """
    if header is None or not _if_range_holds(if_range, record):
        return None
    found = _RANGE.fullmatch(header.strip())
    if not found or found.groups() == ("", ""):
        return None
    first, last, size = found.group(1), found.group(2), record.size
    if not first:  # a suffix: the last n bytes
        if int(last) == 0 or size == 0:
            raise RangeNotSatisfiable()
        return max(size - int(last), 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None  # invalid: ignore the header
    if start >= size:
        raise RangeNotSatisfiable()
    return start, end


def _if_range_holds(value: str | None, record: FileRecord) -> bool:
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"'):
        return value == etag(record)  # strong comparison only
    date = parse_date(value)
    return date is not None and date == last_modified(record)
