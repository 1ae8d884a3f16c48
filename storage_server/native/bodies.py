"""Upload bodies decoded as they stream in (a raw body is the file; a multipart/form-data body
carries it in the part named `file`), and the rules for an upload's name and content type."""

from __future__ import annotations

import contextlib
import mimetypes
import re
import urllib.parse
from dataclasses import dataclass

from multipart import MultipartError, MultipartSegment, PushMultipartParser, parse_options_header

from ..store.contract import Upload
from .digests import Checks

FILE_FIELD = "file"
NAME_MAX_BYTES = 1024
OCTET_STREAM = "application/octet-stream"
# Types that say nothing about a raw body: curl -d and many HTTP clients send the second by default.
GENERIC_TYPES = {OCTET_STREAM, "application/x-www-form-urlencoded"}

_CONTENT_TYPE = re.compile(r"[!-~][ -~]{0,254}")  # printable ASCII, at most 255 characters
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class BadUpload(Exception):
    """The request's body or upload headers are malformed; `code` names the problem."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


@dataclass(frozen=True)
class Part:
    """What the body said about the file it carried."""

    filename: str | None = None
    content_type: str | None = None


class RawBody:
    """The whole request body is the file."""

    def __init__(self, upload: Upload, checks: Checks | None = None) -> None:
        self._upload = upload
        self._checks = checks

    def feed(self, chunk: bytes) -> None:
        self._upload.write(chunk)
        if self._checks is not None:
            self._checks.update_file(chunk)

    def finish(self) -> Part:
        return Part()


class MultipartBody:
    """A multipart/form-data body: the first part named `file` is stored, other parts skipped.

    Uses the `multipart` package's push parser, which raises on a truncated body.
    """

    def __init__(
        self, upload: Upload, content_type: str, content_length: int | None, checks: Checks | None = None
    ) -> None:
        boundary = parse_options_header(content_type)[1].get("boundary")
        if not boundary:
            raise BadUpload("malformed_multipart", "multipart/form-data needs a boundary parameter")
        try:
            self._parser = PushMultipartParser(boundary, content_length or -1, max_header_count=16)
        except MultipartError as exc:
            raise BadUpload("malformed_multipart", f"invalid multipart body: {exc}") from None
        self._upload = upload
        self._checks = checks
        self._part: Part | None = None
        self._in_file = False

    def feed(self, chunk: bytes) -> None:
        if self._checks is not None:
            self._checks.update_body(chunk)
        try:
            for event in self._parser.parse(chunk):
                if isinstance(event, MultipartSegment):
                    self._in_file = self._part is None and event.name == FILE_FIELD
                    if self._in_file:
                        self._part = Part(event.filename or None, event.content_type)
                elif event is None:
                    self._in_file = False
                elif self._in_file:
                    self._upload.write(event)
                    if self._checks is not None:
                        self._checks.update_file(event)
        except MultipartError as exc:
            raise BadUpload("malformed_multipart", f"invalid multipart body: {exc}") from None

    def finish(self) -> Part:
        self.feed(b"")  # an empty chunk tells the parser the body ended
        try:
            self._parser.close(check_complete=True)
        except MultipartError as exc:
            raise BadUpload("malformed_multipart", f"incomplete multipart body: {exc}") from None
        if self._part is None:
            raise BadUpload("missing_file_part", f"the multipart body has no part named '{FILE_FIELD}'")
        return self._part


def is_multipart(content_type: str | None) -> bool:
    return content_type is not None and parse_options_header(content_type)[0] == "multipart/form-data"


def decoder_for(
    upload: Upload, content_type: str | None, content_length: int | None, checks: Checks | None
) -> RawBody | MultipartBody:
    """The body decoder for a request with this Content-Type; raise BadUpload if it is unusable."""
    if content_type is not None and is_multipart(content_type):
        return MultipartBody(upload, content_type, content_length, checks)
    return RawBody(upload, checks)


def check_filename(name: str | None) -> str | None:
    """Return an original file name if it is acceptable; raise BadUpload otherwise."""
    if name is None:
        return None
    if not name or len(name.encode("utf-8", "surrogatepass")) > NAME_MAX_BYTES or _CONTROL.search(name):
        raise BadUpload(
            "invalid_filename", f"a file name is 1-{NAME_MAX_BYTES} bytes with no control characters"
        )
    return name


def header_filename(value: str | None) -> str | None:
    """Decode an X-Filename header: percent-encoded UTF-8, or raw UTF-8 bytes."""
    if value is None:
        return None
    # Tornado decodes headers as Latin-1: recover raw UTF-8 bytes, else keep the text as it is.
    with contextlib.suppress(UnicodeError):
        value = value.encode("latin-1").decode("utf-8")
    try:
        return check_filename(urllib.parse.unquote(value, errors="strict"))
    except UnicodeDecodeError:
        raise BadUpload("invalid_filename", "X-Filename is not valid percent-encoded UTF-8") from None


def check_content_type(value: str | None) -> str | None:
    """Return a declared media type if it can be stored and sent back; raise BadUpload otherwise."""
    if value is None:
        return None
    value = value.strip()
    if not _CONTENT_TYPE.fullmatch(value):
        raise BadUpload("invalid_content_type", "a content type is printable ASCII of at most 255 characters")
    return value


def is_generic(content_type: str) -> bool:
    """Whether a declared type says nothing about the bytes (then the name decides)."""
    return parse_options_header(content_type)[0] in GENERIC_TYPES


def resolve_content_type(declared: str | None, name: str) -> str:
    """The declared type unless it is missing or generic, else a guess from the name."""
    if declared and not is_generic(declared):
        return declared
    return mimetypes.guess_type(name)[0] or OCTET_STREAM


def content_disposition(name: str) -> str:
    """RFC 6266 header with an ASCII fallback and the exact UTF-8 name (RFC 8187)."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
