"""The one handler of the S3 endpoint: it finds the bucket and key (path style, or virtual-hosted
style under STORAGE_S3_API_DOMAIN) and the operation (method and query subresources; unknown
subresources are 501 NotImplemented), checks the signature and the key's access, streams the
body in (into an upload, or a small buffer for XML), then runs the operation."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

from tornado.http1connection import HTTP1Connection
from tornado.web import stream_request_body

from . import buckets, copy, listing, multipart, objects, xml
from .base import S3Handler, fail_answer
from .chunked import Payload
from .errors import S3Error

NO_LIMIT = 1 << 62
DRAIN_LIMIT = 1 << 20  # a body this small is read before an early error is answered
STREAMED = {"PutObject", "UploadPart"}
# Subresources this endpoint does not serve (answered 501), beyond those it does.
UNSUPPORTED = {
    "accelerate", "acl", "analytics", "attributes", "cors", "encryption", "intelligent-tiering",
    "inventory", "legal-hold", "lifecycle", "logging", "metrics", "notification", "object-lock",
    "ownershipControls", "policy", "policyStatus", "publicAccessBlock", "replication",
    "requestPayment", "restore", "retention", "select", "tagging", "torrent", "website",
    "renameObject", "session",
}  # fmt: skip
BUCKET_GET = {
    "location": "GetBucketLocation",
    "versioning": "GetBucketVersioning",
    "acl": "GetBucketAcl",
    "versions": "ListObjectVersions",
    "uploads": "ListMultipartUploads",
}
Op = Callable[[S3Handler], Awaitable[None]]
OPERATIONS: dict[str, Op] = {
    "ListBuckets": buckets.list_buckets,
    "CreateBucket": buckets.create_bucket,
    "DeleteBucket": buckets.delete_bucket,
    "HeadBucket": buckets.head_bucket,
    "GetBucketLocation": buckets.get_bucket_location,
    "GetBucketVersioning": buckets.get_bucket_versioning,
    "GetBucketAcl": buckets.get_bucket_acl,
    "GetObjectAcl": buckets.get_object_acl,
    "DeleteObjects": buckets.delete_objects,
    "ListObjects": listing.list_objects,
    "ListObjectsV2": listing.list_objects_v2,
    "ListObjectVersions": listing.list_object_versions,
    "PutObject": objects.put_object,
    "GetObject": objects.get_object,
    "HeadObject": objects.head_object,
    "DeleteObject": objects.delete_object,
    "CopyObject": copy.copy_object,
    **multipart.OPERATIONS,
}


def operation(method: str, bucket: str | None, key: str | None, args: dict[str, str], copying: bool) -> str:
    """The S3 operation a request asks for; raise NotImplemented or MethodNotAllowed."""
    names = set(args)
    if bucket is None:
        if method in ("GET", "HEAD"):
            return "ListBuckets"
        raise S3Error("MethodNotAllowed")
    if key is None:
        if method == "GET":
            for sub, op in BUCKET_GET.items():
                if sub in names:
                    return op
        if names & UNSUPPORTED:
            raise S3Error(
                "NotImplemented", f"the subresource(s) {sorted(names & UNSUPPORTED)} are not served"
            )
        if method == "GET":
            return "ListObjectsV2" if args.get("list-type") == "2" else "ListObjects"
        found = {"PUT": "CreateBucket", "DELETE": "DeleteBucket", "HEAD": "HeadBucket"}.get(method)
        if method == "POST" and "delete" in names:
            found = "DeleteObjects"
    else:
        if method == "GET" and "acl" in names:
            return "GetObjectAcl"
        if names & UNSUPPORTED:
            raise S3Error(
                "NotImplemented", f"the subresource(s) {sorted(names & UNSUPPORTED)} are not served"
            )
        upload = "uploadId" in names
        found = {
            "GET": "ListParts" if upload else "GetObject",
            "HEAD": "HeadObject",
            "DELETE": "AbortMultipartUpload" if upload else "DeleteObject",
            "PUT": ("UploadPartCopy" if copying else "UploadPart")
            if upload
            else ("CopyObject" if copying else "PutObject"),
            "POST": "CompleteMultipartUpload"
            if upload
            else ("CreateMultipartUpload" if "uploads" in names else None),
        }.get(method)
    if found is None:
        raise S3Error("NotImplemented" if method in ("POST", "PUT") else "MethodNotAllowed")
    return found


@stream_request_body
class S3Endpoint(S3Handler):
    early_error: S3Error | None = None

    async def prepare(self) -> None:
        self._track(True)
        self.body = bytearray()
        declared = self.request.headers.get("Content-Length")
        length = int(declared) if declared and declared.isascii() and declared.isdigit() else None
        try:
            await self._admit()
        except S3Error as error:
            if length is None or length > DRAIN_LIMIT:
                raise
            self.early_error = error  # read (and drop) a small body first, then answer

    async def _admit(self) -> None:
        path = self._target()
        self.op = operation(
            self.request.method or "",
            self.bucket,
            self.key,
            self.args,
            "x-amz-copy-source" in self.request.headers,
        )
        self.route = f"s3:{self.op}"
        self.authenticate(path)
        await self.authorize()
        if self.op in STREAMED:
            self.connection.set_max_body_size(NO_LIMIT)
            if self.op == "PutObject":
                self.upload = await objects.begin_put(self)
            else:
                self.part = await multipart.begin_part(self)
        else:
            self.connection.set_max_body_size(xml.MAX_BODY * 2)
            self.payload = Payload(self.signed, self.request.headers, self._buffer)

    def _target(self) -> str:
        """Set bucket and key from the host and path; return the decoded path that was signed."""
        try:
            path = urllib.parse.unquote(self.request.path, errors="strict")
        except UnicodeDecodeError:
            raise S3Error("InvalidArgument", "the path is not UTF-8") from None
        domain = self.config.s3_api_domain
        host = (self.request.host or "").rsplit(":", 1)[0].lower()
        if domain and host.endswith("." + domain.lower()):
            self.bucket, key = host[: -len(domain) - 1], path[1:]
        else:
            bucket, _, key = path[1:].partition("/")
            self.bucket = bucket or None
        self.key = key or None if self.bucket is not None else None
        return path

    def _buffer(self, data: bytes) -> None:
        if len(self.body) + len(data) > xml.MAX_BODY:
            raise S3Error("MalformedXML", f"a request body of this kind is at most {xml.MAX_BODY} bytes")
        self.body += data

    @property
    def connection(self) -> HTTP1Connection:
        conn = self.request.connection
        assert isinstance(conn, HTTP1Connection)
        return conn

    async def data_received(self, chunk: bytes) -> None:
        if self.payload is None or self._finished or self.early_error is not None:
            return
        self.bytes_in += len(chunk)
        try:
            await self.call(self.payload.feed, chunk)
        except Exception as exc:
            self._discard()
            error = fail_answer(exc)
            self.send_error(error.status, exc_info=(type(error), error, None))

    def _discard(self) -> None:
        upload, part = self.upload, self.part
        self.upload, self.part, self.payload = None, None, None
        for each in (upload, part):
            if each is not None:
                asyncio.get_running_loop().run_in_executor(None, each.abort)

    def _track(self, active: bool) -> None:
        in_flight: set[Any] = self.application.settings["in_flight"]
        (in_flight.add if active else in_flight.discard)(self)

    def on_finish(self) -> None:
        self._discard()
        self._track(False)

    def on_connection_close(self) -> None:
        self._discard()
        self._track(False)
        super().on_connection_close()

    async def _run(self, *_args: str) -> None:
        if self.early_error is not None:
            raise self.early_error
        if self.payload is None:
            return  # answered while the body streamed in
        if self.op not in STREAMED:
            await self.call(self.payload.finish)
        await OPERATIONS[self.op](self)

    get = head = put = post = delete = _run
