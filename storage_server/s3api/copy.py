"""CopyObject: `x-amz-copy-source` (with its x-amz-copy-source-if-* conditions on the source),
the metadata directive COPY (the store's copy: bytes, type and metadata) or REPLACE (the bytes
streamed into a new upload with the request's type and metadata; a copy onto itself with
REPLACE is how S3 clients change an object's metadata)."""

from __future__ import annotations

import urllib.parse

from ..auth.keyring import Access
from ..store.contract import Precondition, Store
from ..store.records import FileRecord
from . import xml
from .base import S3Handler
from .errors import S3Error
from .meta import DEFAULT_TYPE, Conditions, metadata_from, object_headers
from .objects import check_key, is_marker, write_precondition

COPY_BLOCK = 1 << 20


def copy_source(h: S3Handler) -> tuple[str, str]:
    """The (bucket, key) of x-amz-copy-source; raise InvalidArgument."""
    raw = h.header("x-amz-copy-source") or ""
    path, _, query = raw.partition("?")
    if query and query not in ("versionId=null",):
        raise S3Error("NotImplemented", "versions other than null are not kept")
    bucket, _, key = urllib.parse.unquote(path).lstrip("/").partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", "x-amz-copy-source must be bucket/key")
    check_key(key)
    if is_marker(key):
        raise S3Error("InvalidArgument", "a folder marker cannot be copied")
    return bucket, key


def check_source(store: Store, bucket: str, key: str, conditions: Conditions) -> FileRecord:
    """The source's record if the copy-source conditions hold; raise PreconditionFailed."""
    reader = store.open_file(bucket, key)
    reader.close()
    if conditions.read_verdict(reader.record) is not None:
        raise S3Error(
            "PreconditionFailed", "the copy source does not match the x-amz-copy-source-if-* headers"
        )
    return reader.record


def rewrite(
    store: Store,
    src: tuple[str, str],
    dst: tuple[str, str],
    content_type: str,
    metadata: dict[str, str],
    precondition: Precondition | None,
) -> FileRecord:
    """Stream the source's bytes into a new upload of `dst` with this type and metadata."""
    reader = store.open_file(*src)
    try:
        upload = store.begin_upload(
            *dst, size=reader.record.size, content_type=content_type, precondition=precondition, md5=True
        )
        try:
            while block := reader.read(COPY_BLOCK):
                upload.write(block)
            if upload.sha256() != reader.record.sha256:
                raise S3Error("InternalError", "the source changed while it was copied; try again")
            return upload.commit(
                content_type=content_type,
                name=dst[1].rsplit("/", 1)[-1],
                metadata=metadata,
                precondition=precondition,
            )
        except BaseException:
            upload.abort()
            raise
    finally:
        reader.close()


async def copy_object(h: S3Handler) -> None:
    assert h.bucket is not None
    assert h.key is not None
    check_key(h.key)
    if is_marker(h.key):
        raise S3Error("InvalidArgument", "cannot copy onto a folder marker")
    src = copy_source(h)
    h.require(Access.READ, src[0])
    conditions = Conditions.from_headers(h.request.headers, "x-amz-copy-source-")
    source = await h.call(check_source, h.store, *src, conditions)
    directive = (h.header("x-amz-metadata-directive") or "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise S3Error("InvalidArgument", "x-amz-metadata-directive must be COPY or REPLACE")
    precondition = write_precondition(h)
    if directive == "COPY":
        if src == (h.bucket, h.key):
            raise S3Error(
                "InvalidRequest",
                "This copy request is illegal because it is trying to copy an object to itself without "
                "changing the object's metadata, storage class, website redirect location or encryption "
                "attributes.",
            )
        record = await h.call(h.store.copy_file, *src, h.bucket, h.key, precondition=precondition)
    else:
        content_type = h.header("Content-Type") or source.content_type or DEFAULT_TYPE
        metadata = metadata_from(h.request.headers)
        record = await h.call(rewrite, h.store, src, (h.bucket, h.key), content_type, metadata, precondition)
    body = xml.document(
        "CopyObjectResult",
        [("LastModified", xml.iso(record.updated_at)), ("ETag", object_headers(record)["ETag"])],
    )
    h.send_xml(body)
