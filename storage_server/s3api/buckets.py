"""Bucket operations: ListBuckets, CreateBucket, DeleteBucket (refused while not empty),
HeadBucket, GetBucketLocation, DeleteObjects; and the answers that keep clients working
(GetBucketVersioning: never enabled; GetBucketAcl and GetObjectAcl: the owner has full control)."""

from __future__ import annotations

from ..store.contract import Store
from . import xml
from .base import S3Handler
from .errors import S3Error, s3_error
from .objects import check_key, is_marker


async def list_buckets(h: S3Handler) -> None:
    buckets = await h.call(h.store.list_buckets)
    key = h.caller
    seen = [b for b in buckets if key is None or key.sees(b.name)]
    body = xml.document(
        "ListAllMyBucketsResult",
        [
            xml.owner(),
            (
                "Buckets",
                [("Bucket", [("Name", b.name), ("CreationDate", xml.iso(b.created_at))]) for b in seen],
            ),
        ],
    )
    h.send_xml(body)


async def create_bucket(h: S3Handler) -> None:
    assert h.bucket is not None
    location = xml.parse_location(bytes(h.body))
    if location and location != h.config.s3_api_region:
        raise S3Error(
            "InvalidArgument" if location else "InvalidRequest",
            f"this endpoint's region is '{h.config.s3_api_region}'",
        )
    _record, created = await h.call(h.store.create_bucket, h.bucket)
    if not created:
        raise S3Error("BucketAlreadyOwnedByYou")
    h.set_header("Location", "/" + h.bucket)
    h.send_empty()


async def delete_bucket(h: S3Handler) -> None:
    assert h.bucket is not None
    # S3 refuses to delete a bucket that holds objects (the store would delete them with it).
    # A file uploaded between this look and the delete goes with the bucket: docs/s3.md.
    page = await h.call(h.store.list_files, h.bucket, limit=1)
    if page.files or page.folders:
        raise S3Error("BucketNotEmpty")
    await h.call(h.store.delete_bucket, h.bucket)
    h.send_empty(204)


async def head_bucket(h: S3Handler) -> None:
    assert h.bucket is not None
    await h.call(h.store.check_bucket, h.bucket)
    h.set_header("x-amz-bucket-region", h.config.s3_api_region)
    h.send_empty()


async def get_bucket_location(h: S3Handler) -> None:
    assert h.bucket is not None
    await h.call(h.store.check_bucket, h.bucket)
    region = h.config.s3_api_region
    body = xml.document("LocationConstraint", [])
    if region != "us-east-1":  # S3 answers an empty constraint for us-east-1
        body = body.replace(b"></LocationConstraint>", f">{region}</LocationConstraint>".encode())
    h.send_xml(body)


async def get_bucket_versioning(h: S3Handler) -> None:
    assert h.bucket is not None
    await h.call(h.store.check_bucket, h.bucket)
    h.send_xml(xml.document("VersioningConfiguration", []))


def _acl() -> bytes:
    grantee: list[xml.Node] = [("ID", xml.OWNER_ID), ("DisplayName", xml.OWNER_ID)]
    grant: xml.Node = ("Grant", [("Grantee", grantee), ("Permission", "FULL_CONTROL")])
    return xml.document("AccessControlPolicy", [xml.owner(), ("AccessControlList", [grant])]).replace(
        b"<Grantee>",
        b'<Grantee xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="CanonicalUser">',
    )


async def get_bucket_acl(h: S3Handler) -> None:
    assert h.bucket is not None
    await h.call(h.store.check_bucket, h.bucket)
    h.send_xml(_acl())


async def get_object_acl(h: S3Handler) -> None:
    assert h.bucket is not None
    assert h.key is not None
    check_key(h.key)
    reader = await h.call(h.store.open_file, h.bucket, h.key)
    reader.close()
    h.send_xml(_acl())


async def delete_objects(h: S3Handler) -> None:
    assert h.bucket is not None
    quiet, keys = xml.parse_delete(bytes(h.body))
    await h.call(h.store.check_bucket, h.bucket)
    results = await h.call(_delete_each, h.store, h.bucket, keys)
    nodes: list[xml.Node] = []
    for key, error in results:
        if error is None:
            if not quiet:
                nodes.append(("Deleted", [("Key", key)]))
        else:
            nodes.append(("Error", [("Key", key), ("Code", error.code), ("Message", error.message)]))
    h.send_xml(xml.document("DeleteResult", nodes))


def _delete_each(store: Store, bucket: str, keys: list[str]) -> list[tuple[str, S3Error | None]]:
    results: list[tuple[str, S3Error | None]] = []
    for key in keys:
        try:
            check_key(key)
            if not is_marker(key):
                store.delete_file(bucket, key)
            results.append((key, None))
        except Exception as exc:
            error = s3_error(exc)
            if error is None:
                raise
            results.append((key, error))
    return results
