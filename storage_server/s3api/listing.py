"""Listings: ListObjects (v1, marker), ListObjectsV2 (continuation-token, start-after,
fetch-owner), ListObjectVersions (the current objects, each version "null"); prefix, delimiter
"/", max-keys and encoding-type=url for all of them. Pages come from the store in UTF-8 byte
order, as S3's do."""

from __future__ import annotations

import base64
import binascii
import urllib.parse

from ..store.records import FileRecord, Page
from . import xml
from .base import S3Handler
from .errors import S3Error
from .meta import etag

MAX_KEYS = 1000


def _max_keys(h: S3Handler) -> int:
    value = h.args.get("max-keys", str(MAX_KEYS))
    if not value.isascii() or not value.isdigit():
        raise S3Error("InvalidArgument", "max-keys must be a non-negative integer")
    return min(int(value), MAX_KEYS)


def _delimiter(h: S3Handler) -> str | None:
    delimiter = h.args.get("delimiter") or None
    if delimiter not in (None, "/"):
        raise S3Error("NotImplemented", "the only delimiter this endpoint lists by is '/'")
    return delimiter


def _encoder(h: S3Handler) -> tuple[str | None, object]:
    kind = h.args.get("encoding-type")
    if kind not in (None, "url"):
        raise S3Error("InvalidArgument", "encoding-type must be url")
    if kind == "url":
        return kind, lambda s: urllib.parse.quote(s, safe="/") if s is not None else None
    return kind, lambda s: s


async def _page(h: S3Handler, after: str | None, limit: int) -> Page:
    assert h.bucket is not None
    prefix, delimiter = h.args.get("prefix", ""), _delimiter(h)
    if limit == 0:
        await h.call(h.store.check_bucket, h.bucket)
        return Page(files=[], folders=[])
    if prefix.startswith("/") or "//" in prefix:  # no key can have it
        await h.call(h.store.check_bucket, h.bucket)
        return Page(files=[], folders=[])
    return await h.call(
        h.store.list_files,
        h.bucket,
        prefix=prefix,
        delimited=delimiter is not None,
        limit=limit,
        after=after.encode("utf-8") if after else None,
    )


def _contents(record: FileRecord, encode: object, with_owner: bool) -> xml.Node:
    assert callable(encode)
    nodes: list[xml.Node] = [
        ("Key", encode(record.path)),
        ("LastModified", xml.iso(record.updated_at)),
        ("ETag", etag(record)),
        ("Size", record.size),
        ("StorageClass", "STANDARD"),
    ]
    if with_owner:
        nodes.append(xml.owner())
    return ("Contents", nodes)


def _common(page: Page, encode: object) -> list[xml.Node]:
    assert callable(encode)
    return [("CommonPrefixes", [("Prefix", encode(folder))]) for folder in page.folders]


async def list_objects(h: S3Handler) -> None:
    """ListObjects (v1)."""
    limit = _max_keys(h)
    marker = h.args.get("marker") or None
    kind, encode = _encoder(h)
    assert callable(encode)
    page = await _page(h, marker, limit)
    truncated = page.next_after is not None
    nodes: list[xml.Node] = [
        ("Name", h.bucket),
        ("Prefix", encode(h.args.get("prefix", ""))),
        ("Marker", encode(marker or "")),
        ("NextMarker", encode(page.next_after) if truncated else None),
        ("MaxKeys", limit),
        ("Delimiter", encode(h.args.get("delimiter")) if h.args.get("delimiter") else None),
        ("IsTruncated", truncated),
        ("EncodingType", kind),
        *[_contents(f, encode, True) for f in page.files],
        *_common(page, encode),
    ]
    h.send_xml(xml.document("ListBucketResult", nodes))


def _token(after: str) -> str:
    return base64.urlsafe_b64encode(after.encode("utf-8")).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode("utf-8")
    except (binascii.Error, ValueError):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect") from None


async def list_objects_v2(h: S3Handler) -> None:
    limit = _max_keys(h)
    token = h.args.get("continuation-token")
    start_after = h.args.get("start-after") or None
    after = _untoken(token) if token else start_after
    kind, encode = _encoder(h)
    assert callable(encode)
    page = await _page(h, after, limit)
    truncated = page.next_after is not None
    nodes: list[xml.Node] = [
        ("Name", h.bucket),
        ("Prefix", encode(h.args.get("prefix", ""))),
        ("StartAfter", encode(start_after) if start_after else None),
        ("ContinuationToken", token),
        ("NextContinuationToken", _token(page.next_after) if page.next_after is not None else None),
        ("KeyCount", len(page.files) + len(page.folders)),
        ("MaxKeys", limit),
        ("Delimiter", encode(h.args.get("delimiter")) if h.args.get("delimiter") else None),
        ("IsTruncated", truncated),
        ("EncodingType", kind),
        *[_contents(f, encode, h.args.get("fetch-owner") == "true") for f in page.files],
        *_common(page, encode),
    ]
    h.send_xml(xml.document("ListBucketResult", nodes))


async def list_object_versions(h: S3Handler) -> None:
    """The current objects, each as its only version, "null"."""
    limit = _max_keys(h)
    marker = h.args.get("key-marker") or None
    kind, encode = _encoder(h)
    assert callable(encode)
    page = await _page(h, marker, limit)
    truncated = page.next_after is not None
    versions: list[xml.Node] = []
    for f in page.files:
        versions.append(
            (
                "Version",
                [
                    ("Key", encode(f.path)),
                    ("VersionId", "null"),
                    ("IsLatest", True),
                    ("LastModified", xml.iso(f.updated_at)),
                    ("ETag", etag(f)),
                    ("Size", f.size),
                    ("StorageClass", "STANDARD"),
                    xml.owner(),
                ],
            )
        )
    nodes: list[xml.Node] = [
        ("Name", h.bucket),
        ("Prefix", encode(h.args.get("prefix", ""))),
        ("KeyMarker", encode(marker or "")),
        ("VersionIdMarker", ""),
        ("NextKeyMarker", encode(page.next_after) if truncated else None),
        ("NextVersionIdMarker", "null" if truncated else None),
        ("MaxKeys", limit),
        ("Delimiter", encode(h.args.get("delimiter")) if h.args.get("delimiter") else None),
        ("IsTruncated", truncated),
        ("EncodingType", kind),
        *versions,
        *_common(page, encode),
    ]
    h.send_xml(xml.document("ListVersionsResult", nodes))
