"""Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy, CompleteMultipartUpload,
AbortMultipartUpload, ListParts, ListMultipartUploads, over the store's staging."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..store.contract import Upload
from .base import S3Handler
from .errors import S3Error


async def begin_part(h: S3Handler) -> Upload | None:
    raise S3Error("NotImplemented", "multipart uploads are not served yet")


async def _not_yet(h: S3Handler) -> None:
    raise S3Error("NotImplemented", "multipart uploads are not served yet")


OPERATIONS: dict[str, Callable[[S3Handler], Awaitable[None]]] = {
    name: _not_yet
    for name in (
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPartCopy",
        "CompleteMultipartUpload",
        "AbortMultipartUpload",
        "ListParts",
        "ListMultipartUploads",
    )
}
