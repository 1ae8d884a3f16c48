"""What the file route's methods do, for the OpenAPI document and /docs (native/files.py)."""

from __future__ import annotations

from .base import Op
from .models import UploadResult
from .verify import DESCRIPTION, VALUES

CONDITIONAL = {
    "If-Match": "412 unless the current file has one of these ETags (`*`: any file)",
    "If-None-Match": "uploads: `*` means create only, 412 if the file exists; reads: 304 on a match",
    "If-Modified-Since": "reads: 304 if not modified since",
    "If-Unmodified-Since": "412 if modified since",
}
UPLOAD_NOTES = """Optional headers (a mismatch is 400 `bad_digest` and stores nothing, a malformed
value 400 `invalid_digest`):

- `X-Filename`: the original file name, percent-encoded UTF-8 (raw bodies)
- `Content-MD5`: base64 MD5 of the request body
- `Content-Digest`: RFC 9530 digest of the request body, e.g. `sha-256=:base64:`
- `Repr-Digest`: RFC 9530 digest of the stored file, e.g. `sha-256=:base64:`
- `X-Checksum-SHA256`: hex SHA-256 of the stored file
"""
READ_HEADERS = {
    **CONDITIONAL,
    "Range": "bytes=a-b, a- or -n: 206 with those bytes",
    "If-Range": "ETag or date",
    "X-Verify": DESCRIPTION,
}
DAMAGED_NOTE = "A file marked damaged (see `GET /api/v1/damaged`) is answered 409 `damaged`."


FILE_OPS: dict[str, Op] = {
    "post": Op(
        "Upload a file: a multipart part named `file`, or the raw body",
        ok=201,
        body="file",
        response=UploadResult,
        errors=(400, 404, 409, 412, 413, 415, 507),
        headers=CONDITIONAL,
        notes=UPLOAD_NOTES,
    ),
    "get": Op(
        "Download a file, streamed",
        response="file",
        errors=(400, 404, 409, 412, 416),
        also={206: "Partial content (Range)", 304: "Not modified"},
        headers=READ_HEADERS,
        header_values={"X-Verify": VALUES},
        notes=DAMAGED_NOTE,
    ),
    "head": Op(
        "The download's headers, without the body",
        errors=(400, 404, 409, 412, 416),
        also={304: "Not modified"},
        notes=DAMAGED_NOTE,
    ),
    "delete": Op(
        "Delete a file (204 also when it was already gone)",
        ok=204,
        errors=(400, 404, 412),
        headers=CONDITIONAL,
    ),
}
FILE_OPS["put"] = FILE_OPS["post"]
