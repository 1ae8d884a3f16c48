"""Object operations: PutObject (streamed into a store upload, checked as it streams),
GetObject and HeadObject (conditional, ranged, `response-*` overrides, partNumber), and
DeleteObject. Keys ending in "/" are folder markers: nothing is stored for them (docs/s3.md)."""

from __future__ import annotations

import asyncio
import hashlib

from tornado.iostream import StreamClosedError

from ..native.conditional import RangeNotSatisfiable, byte_range
from ..store.contract import Precondition, Reader, Upload
from ..store.errors import Damaged
from ..store.keys import validate_key
from ..store.records import FileRecord
from .base import S3Handler
from .chunked import Payload
from .errors import S3Error
from .meta import DEFAULT_TYPE, PARTS, Conditions, metadata_from, object_headers

READ_AHEAD = 1 << 20
EMPTY_MD5 = hashlib.md5(b"").hexdigest()
OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


def is_marker(key: str) -> bool:
    return key.endswith("/")


def check_key(key: str) -> None:
    """Raise InvalidArgument for a key the store cannot hold (a folder marker's "/" aside)."""
    try:
        validate_key(key[:-1] if is_marker(key) else key)
    except Exception as exc:
        raise S3Error("InvalidArgument", f"the key cannot be stored here: {exc}") from None


def declared_size(h: S3Handler) -> int | None:
    """The size of the object the body carries, when the request says it."""
    value = h.header("x-amz-decoded-content-length") or h.header("Content-Length")
    return int(value) if value is not None and value.isascii() and value.isdigit() else None


def write_precondition(h: S3Handler) -> Precondition | None:
    conditions = Conditions.from_headers(h.request.headers)
    return conditions.write_check if conditions.guards_writes else None


async def begin_put(h: S3Handler) -> Upload | None:
    """Start the upload a PutObject body streams into (None for a folder marker)."""
    assert h.bucket is not None
    assert h.key is not None
    check_key(h.key)
    size = declared_size(h)
    limit = h.config.max_upload_size
    if limit is not None and size is not None and size > limit:
        raise S3Error("EntityTooLarge", f"uploads are limited to {limit} bytes")
    h.metadata = metadata_from(h.request.headers)
    if is_marker(h.key):
        await h.call(h.store.check_bucket, h.bucket)
        h.payload = Payload(h.signed, h.request.headers, _refuse_bytes)
        return None
    upload = await h.call(
        h.store.begin_upload,
        h.bucket,
        h.key,
        size=size,
        content_type=h.header("Content-Type") or DEFAULT_TYPE,
        precondition=write_precondition(h),
        md5=True,
    )
    h.payload = Payload(h.signed, h.request.headers, upload.write, upload.sha256)
    return upload


def _refuse_bytes(data: bytes) -> None:
    if data:
        raise S3Error("InvalidArgument", "a key ending in '/' is a folder marker and holds no bytes")


async def put_object(h: S3Handler) -> None:
    assert h.bucket is not None
    assert h.key is not None
    assert h.payload is not None
    upload, h.upload = h.upload, None
    payload = h.payload  # the handler drops its own if the client goes away meanwhile
    try:
        await h.call(payload.finish)
        if upload is None:
            h.set_header("ETag", f'"{EMPTY_MD5}"')
            h.send_empty()
            return
        record = await h.call(
            upload.commit,
            content_type=h.header("Content-Type") or DEFAULT_TYPE,
            name=h.key.rsplit("/", 1)[-1],
            metadata=h.metadata,
            precondition=write_precondition(h),
        )
    except BaseException:
        if upload is not None:
            asyncio.get_running_loop().run_in_executor(None, upload.abort)
        raise
    h.set_header("ETag", object_headers(record)["ETag"])
    for name, value in payload.checks.echo().items():
        h.set_header(name, value)
    h.send_empty()


async def get_object(h: S3Handler) -> None:
    await _send(h, with_body=True)


async def head_object(h: S3Handler) -> None:
    await _send(h, with_body=False)


def _open(h: S3Handler, bucket: str, key: str, stream: bool) -> tuple[Reader, bytes]:
    """The reader, and for a whole GET its first block, read in the same trip to a thread (a
    small object costs one hop)."""
    reader = h.store.open_file(bucket, key, stream=stream)
    try:
        if reader.record.damaged is not None:
            raise Damaged(bucket, key)
        return reader, reader.read(min(READ_AHEAD, reader.record.size)) if stream else b""
    except BaseException:
        reader.close()
        raise


async def _send(h: S3Handler, *, with_body: bool) -> None:
    assert h.bucket is not None
    assert h.key is not None
    check_key(h.key)
    if is_marker(h.key):
        await _send_marker(h, h.bucket, h.key)
        return
    whole = with_body and "Range" not in h.request.headers and "partNumber" not in h.args
    reader, head = await h.call(_open, h, h.bucket, h.key, whole)
    try:
        record = reader.record
        headers = object_headers(record)
        verdict = Conditions.from_headers(h.request.headers).read_verdict(record)
        if verdict == 412:
            raise S3Error(
                "PreconditionFailed", "At least one of the preconditions you specified did not hold"
            )
        if verdict == 304:
            for name in ("ETag", "Last-Modified"):
                h.set_header(name, headers[name])
            h.set_status(304)
            h.finish()
            return
        for name, value in headers.items():
            h.set_header(name, value)
        for param, header in OVERRIDES.items():
            if (override := h.args.get(param)) is not None:
                h.set_header(header, override)
        span = _span(h, record)
        if span is None:
            first, length = 0, record.size
        else:
            first, length = span[0], span[1] - span[0] + 1
            h.set_status(206)
            h.set_header("Content-Range", f"bytes {span[0]}-{span[1]}/{record.size}")
        h.set_header("Content-Length", str(length))
        if with_body and length:
            if span is not None:
                reader.seek(first, length)
            if not await _stream(h, reader, length, head):
                return  # the client went away
        h.finish()
    finally:
        reader.close()


def _span(h: S3Handler, record: FileRecord) -> tuple[int, int] | None:
    """The (first, last) bytes to send for Range or partNumber, or None for all of them."""
    number = h.args.get("partNumber")
    if number is not None:
        if not number.isdigit() or not 1 <= int(number) <= 10000:
            raise S3Error("InvalidArgument", "partNumber must be 1 to 10000")
        count, size = 1, record.size
        if (parts := record.metadata.get(PARTS)) is not None:
            count, size = (int(v) for v in parts.split(":"))
        if int(number) > count:
            raise S3Error("InvalidRange", "the object has fewer parts", ActualObjectSize=str(record.size))
        h.set_header("x-amz-mp-parts-count", str(count))
        if count > 1 and size == 0:
            raise S3Error("NotImplemented", "the parts of this object were not of one size")
        if count == 1:
            return None if record.size == 0 else (0, record.size - 1)
        first = (int(number) - 1) * size
        return first, min(first + size, record.size) - 1
    try:
        return byte_range(h.header("Range"), None, record)
    except RangeNotSatisfiable:
        raise S3Error(
            "InvalidRange", "The requested range is not satisfiable", ActualObjectSize=str(record.size)
        ) from None


async def _stream(h: S3Handler, reader: Reader, length: int, head: bytes) -> bool:
    """Send `length` bytes: `head` (read with the open), then the reader's; False when the
    client went away."""
    chunk = h.config.chunk_size
    try:
        while length > 0:
            block = head or await h.call(reader.read, min(max(READ_AHEAD, chunk), length))
            head = b""
            if not block:
                raise OSError("the file ended early")
            length -= len(block)
            for start in range(0, len(block), chunk):
                piece = block[start : start + chunk]
                h.bytes_out += len(piece)
                h.write(piece)
                await h.flush()
                await asyncio.sleep(0)  # flush() may be done at once: let other requests run
    except StreamClosedError:
        return False
    return True


async def _send_marker(h: S3Handler, bucket: str, key: str) -> None:
    """A folder marker exists while any file is under it."""
    page = await h.call(h.store.list_files, bucket, prefix=key, limit=1)
    if not page.files and not page.folders:
        raise S3Error("NoSuchKey")
    h.set_header("ETag", f'"{EMPTY_MD5}"')
    h.set_header("Content-Type", "application/x-directory")
    h.send_empty()


async def delete_object(h: S3Handler) -> None:
    assert h.bucket is not None
    assert h.key is not None
    check_key(h.key)
    if is_marker(h.key):
        await h.call(h.store.check_bucket, h.bucket)
    else:
        await h.call(h.store.delete_file, h.bucket, h.key)
    h.send_empty(204)
