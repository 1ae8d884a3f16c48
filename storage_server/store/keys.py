"""The rules for bucket names and file keys: one place, applied before any path is touched."""

from __future__ import annotations

import re

from .errors import InvalidKey, InvalidName

KEY_MAX_BYTES = 1024
SEGMENT_MAX_BYTES = 255

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")

# The same rules as JSON Schema patterns, for the OpenAPI document. The key pattern describes a
# safe subset (segments of at most 63 characters, 256 in all, so never over the byte limits).
BUCKET_PATTERN = "^" + _BUCKET_NAME.pattern + "$"
_SEGMENT = r"(?!\.{1,2}(?:/|$))(?!\s+(?:/|$))[^\u0000-\u001f\u007f-\u009f\\/]{1,63}"
KEY_PATTERN = f"^{_SEGMENT}(?:/{_SEGMENT})*$"
KEY_DOC_MAX_LENGTH = 256
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def is_bucket_name(name: str) -> bool:
    return _BUCKET_NAME.fullmatch(name) is not None


def validate_bucket_name(name: str) -> str:
    """Return `name` if it follows the S3 rule; raise InvalidName otherwise."""
    if not is_bucket_name(name):
        raise InvalidName(
            "a bucket name is 3-63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit"
        )
    return name


def validate_key(key: str) -> tuple[str, ...]:
    """Split a key into its segments; raise InvalidKey for anything but a plain relative path."""
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKey("a key is valid UTF-8") from None
    if not 0 < size <= KEY_MAX_BYTES:
        raise InvalidKey(f"a key is 1 to {KEY_MAX_BYTES} bytes long")
    parts = tuple(key.split("/"))
    for part in parts:
        _check_segment(part)
    return parts


def validate_prefix(prefix: str) -> tuple[tuple[str, ...], str]:
    """Split a listing prefix into whole folder segments and a partial last name.

    "a/b/c" -> (("a", "b"), "c"); "a/b/" -> (("a", "b"), ""). Raises InvalidKey where a key
    with this prefix could not exist.
    """
    if not prefix:
        return (), ""
    *folders, partial = prefix.split("/")
    try:
        if len(prefix.encode("utf-8")) > KEY_MAX_BYTES:
            raise InvalidKey(f"a prefix is at most {KEY_MAX_BYTES} bytes")
    except UnicodeEncodeError:
        raise InvalidKey("a prefix is valid UTF-8") from None
    for part in folders:
        _check_segment(part)
    if partial and (_CONTROL.search(partial) or "\\" in partial):
        raise InvalidKey("a prefix has no control characters or backslashes")
    return tuple(folders), partial


def _check_segment(part: str) -> None:
    if part in ("", ".", ".."):
        raise InvalidKey("a key has no empty, '.' or '..' segments")
    if len(part.encode("utf-8")) > SEGMENT_MAX_BYTES:
        raise InvalidKey(f"a key segment is at most {SEGMENT_MAX_BYTES} bytes")
    if _CONTROL.search(part) or "\\" in part or part.isspace():
        raise InvalidKey("a key has no control characters, backslashes or blank segments")
