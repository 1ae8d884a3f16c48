"""How an S3 object maps onto a stored file: its ETag, the user metadata (`x-amz-meta-*`) and
the headers S3 keeps with an object (Content-Disposition, Content-Encoding, Cache-Control,
Expires, Content-Language), which ride in the file's metadata under names users cannot set; and
S3's conditional headers judged against that ETag."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from ..native.conditional import Tags, last_modified, parse_date, parse_tags
from ..store.errors import PreconditionFailed
from ..store.records import FileRecord
from .errors import S3Error

INTERNAL = "s3-internal-"  # metadata names under this prefix are ours; clients cannot set them
ETAG = INTERNAL + "etag"  # the ETag of a completed multipart upload
PARTS = INTERNAL + "parts"  # "count:part size" of a completed multipart upload
KEPT_HEADERS = ("Content-Disposition", "Content-Encoding", "Cache-Control", "Expires", "Content-Language")
USER = "x-amz-meta-"
DEFAULT_TYPE = "binary/octet-stream"
MAX_METADATA = 2048  # bytes of user metadata names and values, as S3 allows


def etag(record: FileRecord) -> str:
    """The object's ETag, quoted: the MD5 of its bytes when it was stored through S3 (or with an
    MD5 otherwise), the multipart ETag of a completed multipart upload, and for a file uploaded
    through the native API "<first 32 hex digits of its sha256>-1": it looks like a multipart
    ETag, so that no client compares it with an MD5 of its own."""
    if (multipart := record.metadata.get(ETAG)) is not None:
        return f'"{multipart}"'
    if record.md5 is not None:
        return f'"{record.md5}"'
    return f'"{record.sha256[:32]}-1"'


def metadata_from(headers: Mapping[str, str]) -> dict[str, str]:
    """The metadata to store from a request's headers: `x-amz-meta-*` and the kept headers."""
    found: dict[str, str] = {}
    size = 0
    for name, given in headers.items():
        lower = name.lower()
        if lower.startswith(USER):
            short = lower[len(USER) :]
            if not short or short.startswith(INTERNAL):
                raise S3Error("InvalidArgument", f"metadata names may not start with '{INTERNAL}'")
            found[short] = given
            size += len(short) + len(given.encode("utf-8", "surrogateescape"))
    if size > MAX_METADATA:
        raise S3Error("InvalidArgument", "the user metadata is over 2 KB")
    for header in KEPT_HEADERS:
        value: str | None = headers.get(header)
        if header == "Content-Encoding" and value is not None:
            # aws-chunked framing is the request's, not the object's.
            value = ",".join(v for v in (p.strip() for p in value.split(",")) if v and v != "aws-chunked")
        if value:
            found[INTERNAL + header.lower()] = value
    return found


def object_headers(record: FileRecord) -> dict[str, str]:
    """The headers of a GET or HEAD of `record` (besides Content-Length and Range)."""
    headers = {
        "ETag": etag(record),
        "Last-Modified": last_modified(record).strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Content-Type": record.content_type,
        "Accept-Ranges": "bytes",
    }
    for name, value in record.metadata.items():
        if not name.startswith(INTERNAL):
            headers[USER + name] = value
    for header in KEPT_HEADERS:
        if (kept := record.metadata.get(INTERNAL + header.lower())) is not None:
            headers[header] = kept
    if (parts := record.metadata.get(PARTS)) is not None:
        headers["x-amz-mp-parts-count"] = parts.split(":", 1)[0]
    return headers


def user_metadata(record: FileRecord) -> dict[str, str]:
    return {k: v for k, v in record.metadata.items() if not k.startswith(INTERNAL)}


@dataclass(frozen=True)
class Conditions:
    """If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since (or their
    x-amz-copy-source-if-* forms), judged against the S3 ETag."""

    if_match: Tags | None = None
    if_none_match: Tags | None = None
    modified_since: datetime | None = None
    unmodified_since: datetime | None = None

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], prefix: str = "") -> Conditions:
        return cls(
            parse_tags(headers.get(prefix + "If-Match")),
            parse_tags(headers.get(prefix + "If-None-Match")),
            parse_date(headers.get(prefix + "If-Modified-Since")),
            parse_date(headers.get(prefix + "If-Unmodified-Since")),
        )

    def read_verdict(self, record: FileRecord) -> int | None:
        """For GET, HEAD and a copy's source: 412, 304, or None (S3: a matching If-Match
        overrides If-Unmodified-Since, a failing If-None-Match overrides If-Modified-Since)."""
        tag = etag(record)
        if self.if_match is not None:
            if not self.if_match.matches(tag, weak=True):
                return 412
        elif self.unmodified_since is not None and last_modified(record) > self.unmodified_since:
            return 412
        if self.if_none_match is not None:
            if self.if_none_match.matches(tag, weak=True):
                return 304
        elif self.modified_since is not None and last_modified(record) <= self.modified_since:
            return 304
        return None

    def write_check(self, current: FileRecord | None) -> None:
        """For PutObject and CompleteMultipartUpload: If-None-Match: * creates only, If-Match
        replaces only that version. Raises PreconditionFailed."""
        if self.if_match is not None and (
            current is None or not self.if_match.matches(etag(current), weak=True)
        ):
            raise PreconditionFailed("the object does not match If-Match")
        none_match = self.if_none_match
        if (
            none_match is not None
            and current is not None
            and (none_match.any or none_match.matches(etag(current), weak=True))
        ):
            raise PreconditionFailed("the object exists (If-None-Match)")

    @property
    def guards_writes(self) -> bool:
        return self.if_match is not None or self.if_none_match is not None
