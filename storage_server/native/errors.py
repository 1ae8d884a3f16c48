"""The native API's one error table: every code it answers with, its status and meaning, and
which store (or request) exception maps to which code. The error table of docs/api.md is printed
from here (`python -m storage_server.native.errors`) and a test keeps the two equal."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tornado.web import HTTPError

from ..store import errors
from .bodies import BadUpload
from .digests import MalformedDigest


@dataclass(frozen=True)
class Code:
    status: int
    meaning: str


CODES: dict[str, Code] = {
    "invalid_bucket_name": Code(400, "not a valid bucket name"),
    "invalid_key": Code(400, "not a valid file path"),
    "malformed_multipart": Code(400, "the multipart/form-data body does not parse"),
    "missing_file_part": Code(400, "the multipart body has no part named `file`"),
    "invalid_filename": Code(400, "`X-Filename` or the part's file name is unusable"),
    "invalid_content_type": Code(400, "the content type cannot be stored"),
    "bad_digest": Code(400, "the bytes do not match the checksum sent (nothing is stored)"),
    "invalid_digest": Code(400, "a checksum header is malformed (answered before the body is read)"),
    "invalid_cursor": Code(400, "not a cursor this service handed out"),
    "bad_request": Code(400, "the request itself is malformed"),
    "invalid_tus_header": Code(
        400,
        "a tus `Upload-*` header is malformed",
    ),
    "unauthorized": Code(401, "no key, or an unknown one (with `WWW-Authenticate`)"),
    "forbidden": Code(403, "the key may not do this, or not in this bucket"),
    "signature_expired": Code(403, "the signed URL has expired"),
    "signature_invalid": Code(403, "the signed URL does not hold (altered, or its key was removed)"),
    "bucket_not_found": Code(404, "no such bucket"),
    "file_not_found": Code(404, "no such file"),
    "not_found": Code(404, "no such route"),
    "upload_not_found": Code(404, "no such resumable upload (or no longer)"),
    "method_not_allowed": Code(405, "the route does not take this method (see `Allow`)"),
    "conflict": Code(409, "a file stands where the path needs a folder, or the reverse"),
    "damaged": Code(409, "the stored bytes no longer match the checksum taken at upload; re-upload the file"),
    "offset_mismatch": Code(409, "tus: not the upload's current `Upload-Offset`"),
    "precondition_failed": Code(412, "an `If-*` condition (or tus's create-only commit) does not hold"),
    "tus_version": Code(412, "tus: `Tus-Resumable` is not `1.0.0`"),
    "payload_too_large": Code(
        413, "the body is larger than `STORAGE_MAX_UPLOAD_SIZE` or the bucket's `file_size_limit`"
    ),
    "past_upload_length": Code(413, "tus: the chunk goes past `Upload-Length`"),
    "mime_type_not_allowed": Code(415, "the bucket's `allowed_mime_types` do not include the file's type"),
    "unsupported_media_type": Code(415, "tus: a `PATCH` of another `Content-Type`"),
    "range_not_satisfiable": Code(416, "no byte of the range exists (`Content-Range: bytes */size`)"),
    "validation_error": Code(422, "a JSON body or query that does not parse or fit"),
    "upload_locked": Code(423, "tus: another request is writing to this upload"),
    "checksum_mismatch": Code(460, "tus: the chunk does not match `Upload-Checksum`"),
    "internal_error": Code(500, "a fault of the server; details go to its log only"),
    "storage_unavailable": Code(503, "the storage path or object store cannot be used now"),
    "insufficient_storage": Code(
        507, "the disk is full, or a declared `Content-Length` does not fit; nothing partial is kept"
    ),
}

# Exceptions the client caused or can act on; the most specific class listed wins.
EXCEPTIONS: dict[type[Exception], str] = {
    errors.InvalidName: "invalid_bucket_name",
    errors.InvalidKey: "invalid_key",
    errors.BadDigest: "bad_digest",
    MalformedDigest: "invalid_digest",
    errors.BucketNotFound: "bucket_not_found",
    errors.FileNotFound: "file_not_found",
    errors.NoSuchUpload: "upload_not_found",
    errors.Locked: "upload_locked",
    errors.InvalidPart: "payload_too_large",
    errors.Conflict: "conflict",
    errors.Damaged: "damaged",
    errors.PreconditionFailed: "precondition_failed",
    errors.TooLarge: "payload_too_large",
    errors.TypeNotAllowed: "mime_type_not_allowed",
    errors.InsufficientStorage: "insufficient_storage",
    errors.Unavailable: "storage_unavailable",
}

# Codes for the errors Tornado raises itself (unknown route, wrong method, bad framing).
TORNADO = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


class ApiError(HTTPError):
    """An error answer: a code of CODES (its status follows), a human-readable detail, and any
    headers the answer needs (such as Content-Range on a 416)."""

    def __init__(self, code: str, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(CODES[code].status)
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})


def api_error(exc: BaseException) -> ApiError | None:
    """The answer for an exception the client caused or can act on; None for a server fault."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BadUpload):
        return ApiError(exc.code, str(exc))
    for cls in type(exc).__mro__:
        if cls in EXCEPTIONS:
            return ApiError(EXCEPTIONS[cls], str(exc))
    return None


def code_for_status(status: int) -> str:
    """The code of an error Tornado raised by itself (500 for anything it did not expect)."""
    return TORNADO.get(status, "internal_error")


def markdown_table() -> str:
    """The documented error table: each status with its codes and what they mean."""
    lines = ["| status | code: meaning |", "|---|---|"]
    for status in sorted({c.status for c in CODES.values()}):
        codes = [f"`{name}`: {c.meaning}" for name, c in CODES.items() if c.status == status]
        lines.append(f"| {status} | {'; '.join(codes)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
