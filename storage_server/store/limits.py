"""A bucket's limits on what it takes (file_size_limit, allowed_mime_types): the one place
their rules are, checked by every backend on every way in (uploads, copies, moves)."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import TooLarge, TypeNotAllowed
from .records import BucketRecord


def media_type(content_type: str) -> str:
    """`type/subtype` of a Content-Type, lowercased, parameters dropped."""
    return content_type.split(";", 1)[0].strip().lower()


@dataclass(frozen=True)
class Limits:
    file_size_limit: int | None = None
    allowed_mime_types: tuple[str, ...] | None = None

    @classmethod
    def of(cls, bucket: BucketRecord) -> Limits:
        types = bucket.allowed_mime_types
        return cls(bucket.file_size_limit, tuple(t.lower() for t in types) if types is not None else None)

    def check_size(self, size: int | None) -> None:
        """Raise TooLarge if a file of `size` bytes (None: not known yet) is over the limit."""
        if size is not None and self.file_size_limit is not None and size > self.file_size_limit:
            raise TooLarge(self.file_size_limit)

    def check_type(self, content_type: str | None) -> None:
        """Raise TypeNotAllowed unless `content_type` (None: not known yet) is allowed: an entry
        `image/png` allows that type, `image/*` any image type."""
        if content_type is None or self.allowed_mime_types is None:
            return
        wanted = media_type(content_type)
        family = wanted.split("/", 1)[0] + "/*"
        if wanted not in self.allowed_mime_types and family not in self.allowed_mime_types:
            raise TypeNotAllowed(wanted)

    def check(self, size: int | None, content_type: str | None) -> None:
        self.check_size(size)
        self.check_type(content_type)


NONE = Limits()
