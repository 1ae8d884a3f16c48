"""Multipart uploads over the store's staging: CreateMultipartUpload, UploadPart (streamed into a
staged part), UploadPartCopy (with a range), CompleteMultipartUpload (part order and ETags
checked, parts under 5 MiB but the last refused, committed as one file through the ordinary
commit, with If-None-Match / If-Match), AbortMultipartUpload, ListParts, ListMultipartUploads."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Awaitable, Callable

from ..auth.keyring import Access
from ..store.contract import PartUpload, Store
from ..store.records import PartRecord, StagedRecord
from . import xml
from .base import S3Handler
from .chunked import Payload
from .copy import check_source, copy_source
from .errors import S3Error
from .meta import DEFAULT_TYPE, ETAG, PARTS, Conditions, metadata_from
from .objects import check_key, is_marker, write_precondition

MIN_PART = 5 * 1024 * 1024
MAX_PART_NUMBER = 10000
COPY_BLOCK = 1 << 20
_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


def _part_number(h: S3Handler) -> int:
    value = h.args.get("partNumber", "")
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_PART_NUMBER:
        raise S3Error("InvalidArgument", "Part number must be an integer between 1 and 10000, inclusive")
    return int(value)


async def _staged(h: S3Handler) -> StagedRecord:
    """The upload of ?uploadId=, if it is one of this bucket and key; raise NoSuchUpload."""
    upload_id = h.args.get("uploadId", "")
    staged = await h.call(h.store.get_staged, upload_id)
    if (staged.bucket, staged.key) != (h.bucket, h.key):
        raise S3Error("NoSuchUpload")
    return staged


async def create_multipart_upload(h: S3Handler) -> None:
    assert h.bucket is not None
    assert h.key is not None
    check_key(h.key)
    if is_marker(h.key):
        raise S3Error("InvalidArgument", "a key ending in '/' is a folder marker and holds no bytes")
    info = {
        "content_type": h.header("Content-Type") or DEFAULT_TYPE,
        "metadata": json.dumps(metadata_from(h.request.headers)),
    }
    staged = await h.call(h.store.begin_staged, h.bucket, h.key, info=info)
    body = xml.document(
        "InitiateMultipartUploadResult", [("Bucket", h.bucket), ("Key", h.key), ("UploadId", staged.id)]
    )
    h.send_xml(body)


async def begin_part(h: S3Handler) -> PartUpload:
    """Start the staged part an UploadPart body streams into."""
    number = _part_number(h)
    limit = h.config.max_upload_size
    declared = h.header("x-amz-decoded-content-length") or h.header("Content-Length") or ""
    if limit is not None and declared.isdigit() and int(declared) > limit:
        raise S3Error("EntityTooLarge", f"uploads are limited to {limit} bytes")
    staged = await _staged(h)
    part = await h.call(h.store.begin_part, staged.id, number)
    h.payload = Payload(h.signed, h.request.headers, part.write)
    return part


async def upload_part(h: S3Handler) -> None:
    payload = h.payload  # the handler drops its own if the client goes away meanwhile
    assert payload is not None
    part, h.part = h.part, None
    assert part is not None
    try:
        await h.call(payload.finish)
        record = await h.call(part.commit)
    except BaseException:
        await h.call(part.abort)
        raise
    h.set_header("ETag", f'"{record.md5}"')
    for name, value in payload.checks.echo().items():
        h.set_header(name, value)
    h.send_empty()


def _copy_into(
    store: Store, upload_id: str, number: int, src: tuple[str, str], span: tuple[int, int] | None
) -> PartRecord:
    reader = store.open_file(*src)
    try:
        if span is not None:
            if span[1] >= reader.record.size or span[0] > span[1]:
                raise S3Error("InvalidRange", "the copy source range is not within the object")
            reader.seek(span[0], span[1] - span[0] + 1)
        part = store.begin_part(upload_id, number)
        try:
            while block := reader.read(COPY_BLOCK):
                part.write(block)
            return part.commit()
        except BaseException:
            part.abort()
            raise
    finally:
        reader.close()


async def upload_part_copy(h: S3Handler) -> None:
    number = _part_number(h)
    src = copy_source(h)
    h.require(Access.READ, src[0])
    staged = await _staged(h)
    span = None
    if (text := h.header("x-amz-copy-source-range")) is not None:
        found = _RANGE.fullmatch(text.strip())
        if found is None:
            raise S3Error("InvalidArgument", "x-amz-copy-source-range must be bytes=first-last")
        span = (int(found.group(1)), int(found.group(2)))
    conditions = Conditions.from_headers(h.request.headers, "x-amz-copy-source-")
    await h.call(check_source, h.store, *src, conditions)
    record = await h.call(_copy_into, h.store, staged.id, number, src, span)
    body = xml.document(
        "CopyPartResult", [("LastModified", xml.iso(record.created_at)), ("ETag", f'"{record.md5}"')]
    )
    h.send_xml(body)


def multipart_etag(parts: list[PartRecord]) -> str:
    """S3's ETag of a multipart object: the MD5 of the parts' MD5s, a dash, their count."""
    digest = hashlib.md5(b"".join(bytes.fromhex(p.md5) for p in parts)).hexdigest()
    return f"{digest}-{len(parts)}"


def chosen_parts(staged: StagedRecord, wanted: list[tuple[int, str]]) -> list[PartRecord]:
    """The staged parts a Complete names, checked: InvalidPartOrder, InvalidPart, EntityTooSmall."""
    numbers = [n for n, _ in wanted]
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        raise S3Error("InvalidPartOrder")
    stored = {p.number: p for p in staged.parts}
    chosen = []
    for number, tag in wanted:
        part = stored.get(number)
        if part is None or tag.strip('"').lower() != part.md5:
            raise S3Error("InvalidPart", f"part {number} was not uploaded, or its ETag does not match")
        chosen.append(part)
    for part in chosen[:-1]:
        if part.size < MIN_PART:
            raise S3Error("EntityTooSmall", f"part {part.number} is under 5 MiB and is not the last")
    return chosen


async def complete_multipart_upload(h: S3Handler) -> None:
    assert h.bucket is not None
    assert h.key is not None
    wanted = xml.parse_complete(bytes(h.body))
    staged = await _staged(h)
    chosen = chosen_parts(staged, wanted)
    tag = multipart_etag(chosen)
    size = chosen[0].size
    uniform = all(p.size == size for p in chosen[:-1]) and chosen[-1].size <= size
    metadata = json.loads(staged.info.get("metadata", "{}"))
    metadata[ETAG] = tag
    metadata[PARTS] = f"{len(chosen)}:{size if uniform else 0}"  # for GetObject's partNumber
    await h.call(
        h.store.complete_staged,
        staged.id,
        [p.number for p in chosen],
        content_type=staged.info.get("content_type", DEFAULT_TYPE),
        name=h.key.rsplit("/", 1)[-1],
        metadata=metadata,
        precondition=write_precondition(h),
    )
    body = xml.document(
        "CompleteMultipartUploadResult",
        [("Location", f"/{h.bucket}/{h.key}"), ("Bucket", h.bucket), ("Key", h.key), ("ETag", f'"{tag}"')],
    )
    h.send_xml(body)


async def abort_multipart_upload(h: S3Handler) -> None:
    staged = await _staged(h)
    await h.call(h.store.abort_staged, staged.id)
    h.send_empty(204)


def _max(h: S3Handler, name: str, most: int) -> int:
    value = h.args.get(name, str(most))
    if not value.isascii() or not value.isdigit():
        raise S3Error("InvalidArgument", f"{name} must be a non-negative integer")
    return min(int(value), most)


async def list_parts(h: S3Handler) -> None:
    staged = await _staged(h)
    limit = _max(h, "max-parts", 1000)
    marker = h.args.get("part-number-marker", "0")
    after = int(marker) if marker.isdigit() else 0
    parts = [p for p in staged.parts if p.number > after]
    page, truncated = parts[:limit], len(parts) > limit
    nodes: list[xml.Node] = [
        ("Bucket", h.bucket),
        ("Key", h.key),
        ("UploadId", staged.id),
        ("Initiator", [("ID", xml.OWNER_ID), ("DisplayName", xml.OWNER_ID)]),
        xml.owner(),
        ("StorageClass", "STANDARD"),
        ("PartNumberMarker", after),
        ("NextPartNumberMarker", page[-1].number if page else after),
        ("MaxParts", limit),
        ("IsTruncated", truncated),
    ]
    for p in page:
        nodes.append(
            (
                "Part",
                [
                    ("PartNumber", p.number),
                    ("LastModified", xml.iso(p.created_at)),
                    ("ETag", f'"{p.md5}"'),
                    ("Size", p.size),
                ],
            )
        )
    h.send_xml(xml.document("ListPartsResult", nodes))


async def list_multipart_uploads(h: S3Handler) -> None:
    assert h.bucket is not None
    prefix = h.args.get("prefix", "")
    limit = _max(h, "max-uploads", 1000)
    key_marker = h.args.get("key-marker", "")
    uploads = await h.call(h.store.list_staged, h.bucket)
    chosen = sorted(
        (u for u in uploads if u.key.startswith(prefix) and u.key > key_marker), key=lambda u: (u.key, u.id)
    )
    page, truncated = chosen[:limit], len(chosen) > limit
    nodes: list[xml.Node] = [
        ("Bucket", h.bucket),
        ("KeyMarker", key_marker),
        ("UploadIdMarker", h.args.get("upload-id-marker", "")),
        ("NextKeyMarker", page[-1].key if truncated else None),
        ("NextUploadIdMarker", page[-1].id if truncated else None),
        ("Prefix", prefix),
        ("MaxUploads", limit),
        ("IsTruncated", truncated),
    ]
    for u in page:
        initiator: xml.Node = ("Initiator", [("ID", xml.OWNER_ID), ("DisplayName", xml.OWNER_ID)])
        entry: list[xml.Node] = [("Key", u.key), ("UploadId", u.id), initiator, xml.owner()]
        nodes.append(("Upload", [*entry, ("StorageClass", "STANDARD"), ("Initiated", xml.iso(u.created_at))]))
    h.send_xml(xml.document("ListMultipartUploadsResult", nodes))


OPERATIONS: dict[str, Callable[[S3Handler], Awaitable[None]]] = {
    "CreateMultipartUpload": create_multipart_upload,
    "UploadPart": upload_part,
    "UploadPartCopy": upload_part_copy,
    "CompleteMultipartUpload": complete_multipart_upload,
    "AbortMultipartUpload": abort_multipart_upload,
    "ListParts": list_parts,
    "ListMultipartUploads": list_multipart_uploads,
}
