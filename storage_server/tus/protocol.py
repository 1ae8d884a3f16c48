"""The tus 1.0.0 protocol's headers: what the service announces, and the parsing of the request
headers (offsets and lengths, `Upload-Metadata`, `Upload-Checksum`), each refusing what does not
parse with the front door's error answers (https://tus.io/protocols/resumable-upload)."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from ..native.errors import ApiError

VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,creation-defer-length,termination,expiration,checksum"
CHECKSUMS = ("sha1", "md5", "sha256")
OFFSET_TYPE = "application/offset+octet-stream"
DEFAULT_MAX_SIZE = 5 << 40  # Tus-Max-Size when STORAGE_MAX_UPLOAD_SIZE is unset: 5 TiB
MAX_DIGITS = 19  # an offset or a length beyond int64 is refused, not parsed
MAX_METADATA = 16 * 1024  # bytes of Upload-Metadata
TUS_HEADERS = (
    "Tus-Resumable, Upload-Length, Upload-Defer-Length, Upload-Offset, Upload-Metadata, "
    "Upload-Checksum, Upload-Concat, X-HTTP-Method-Override, x-upsert, X-Requested-With"
)
TUS_EXPOSED = (
    "Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, Upload-Offset, "
    "Upload-Length, Upload-Defer-Length, Upload-Metadata, Upload-Expires, Location"
)


def bad_header(detail: str) -> ApiError:
    return ApiError("invalid_tus_header", detail)


def check_version(headers: Mapping[str, str]) -> None:
    """Raise 412 `tus_version` unless the request speaks tus 1.0.0 (every request but OPTIONS)."""
    if headers.get("Tus-Resumable") != VERSION:
        raise ApiError(
            "tus_version",
            f"this server speaks tus {VERSION}: send Tus-Resumable: {VERSION}",
            {"Tus-Version": VERSION},
        )


def number(headers: Mapping[str, str], name: str) -> int | None:
    """The non-negative integer header `name` (None when absent); raise 400 when it is not one."""
    value = headers.get(name)
    if value is None:
        return None
    # isdigit() alone takes "²" and other non-ASCII digits, which int() refuses.
    if not (value.isascii() and value.isdigit() and len(value) <= MAX_DIGITS):
        raise bad_header(f"{name} must be a non-negative integer")
    return int(value)


def metadata(header: str | None) -> dict[str, str]:
    """`Upload-Metadata`: comma-separated `key base64(value)` pairs (the value may be absent);
    raise 400 for a key that is not printable ASCII, given twice, or a value that is not base64
    of UTF-8 text."""
    if header is None or not header.strip():
        return {}
    if len(header) > MAX_METADATA:
        raise bad_header(f"Upload-Metadata is limited to {MAX_METADATA} bytes")
    found: dict[str, str] = {}
    for pair in header.split(","):
        key, _, value = pair.strip().partition(" ")
        if not key or not key.isascii() or not key.isprintable() or " " in value.strip():
            raise bad_header("Upload-Metadata must be comma-separated pairs of a key and a base64 value")
        if key in found:
            raise bad_header(f"Upload-Metadata has the key {key!r} twice")
        try:
            found[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise bad_header(f"Upload-Metadata's value of {key!r} is not base64 of UTF-8 text") from None
    return found


@dataclass(frozen=True)
class Checksum:
    """`Upload-Checksum: <algorithm> <base64 digest>` of one PATCH's body."""

    algorithm: str
    digest: bytes

    @classmethod
    def parse(cls, header: str | None) -> Checksum | None:
        """None when absent; raise 400 for an unsupported algorithm or a malformed digest."""
        if header is None:
            return None
        algorithm, _, value = header.strip().partition(" ")
        if algorithm not in CHECKSUMS:
            raise bad_header(f"Upload-Checksum supports {', '.join(CHECKSUMS)}")
        try:
            digest = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise bad_header("Upload-Checksum's digest is not base64") from None
        if len(digest) != hashlib.new(algorithm).digest_size:
            raise bad_header(f"Upload-Checksum's digest is not a {algorithm} digest")
        return cls(algorithm, digest)

    def hasher(self) -> Any:
        return hashlib.new(self.algorithm)


def http_date(when: datetime) -> str:
    """An RFC 9110 date (`Upload-Expires`)."""
    return format_datetime(when, usegmt=True)
