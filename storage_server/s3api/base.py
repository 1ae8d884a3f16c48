"""What every S3 operation shares: the request's target (bucket, key, operation), who signed it
and what that key may do (the ACCESS table), store calls off the event loop with the one error
table, and XML answers and errors with an x-amz-request-id."""

from __future__ import annotations

import functools
import logging
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from tornado.httputil import HTTPHeaders
from tornado.ioloop import IOLoop
from tornado.web import RequestHandler

from ..auth.keyring import Access, Key, Keyring
from ..settings import Settings
from ..store.contract import PartUpload, Store, Upload
from . import sigv4, xml
from .chunked import Payload
from .errors import S3Error, s3_error

log = logging.getLogger("storage_server")
T = TypeVar("T")

# Who may do what: each S3 operation and the access level its key needs on the bucket it names
# (ListBuckets names none). Anonymous requests may only read objects of public buckets. A test
# walks this table with every kind of key.
ACCESS: dict[str, Access] = {
    "ListBuckets": Access.READ,
    "CreateBucket": Access.ADMIN,
    "DeleteBucket": Access.ADMIN,
    "HeadBucket": Access.READ,
    "GetBucketLocation": Access.READ,
    "GetBucketVersioning": Access.READ,
    "GetBucketAcl": Access.READ,
    "ListObjects": Access.READ,
    "ListObjectsV2": Access.READ,
    "ListObjectVersions": Access.READ,
    "ListMultipartUploads": Access.READ,
    "GetObject": Access.READ,
    "HeadObject": Access.READ,
    "GetObjectAcl": Access.READ,
    "ListParts": Access.READ,
    "PutObject": Access.WRITE,
    "CopyObject": Access.WRITE,  # and READ on the source bucket
    "DeleteObject": Access.WRITE,
    "DeleteObjects": Access.WRITE,
    "CreateMultipartUpload": Access.WRITE,
    "UploadPart": Access.WRITE,
    "UploadPartCopy": Access.WRITE,  # and READ on the source bucket
    "CompleteMultipartUpload": Access.WRITE,
    "AbortMultipartUpload": Access.WRITE,
}
V2 = (
    "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256 "
    "(Signature Version 4)."
)
ANONYMOUS = {"GetObject", "HeadObject"}  # in a public bucket


class S3Headers(HTTPHeaders):
    """Answer headers with the user metadata names in lower case, as S3 sends them (clients
    take the name after x-amz-meta- as sent; Tornado would capitalize it)."""

    def get_all(self) -> Iterator[tuple[str, str]]:
        for name, value in super().get_all():
            yield (name.lower() if name.startswith("X-Amz-Meta-") else name), value


class S3Handler(RequestHandler):
    """The state of one S3 request; router.py fills it and dispatches to an operation."""

    op = ""
    bucket: str | None = None
    key: str | None = None
    signed: sigv4.Signed | None = None
    payload: Payload | None = None
    upload: Upload | None = None  # a PutObject's, until its body is complete
    part: PartUpload | None = None  # an UploadPart's, the same
    body: bytearray = bytearray()
    metadata: dict[str, str] = {}  # noqa: RUF012 (replaced per request, never mutated)
    request_id = ""

    def initialize(self, store: Store, config: Settings) -> None:
        self.store = store
        self.config = config
        self.bytes_in = 0
        self.bytes_out = 0
        self.route = "s3"

    @property
    def keyring(self) -> Keyring:
        keyring: Keyring = self.application.settings["keyring"]
        return keyring

    @property
    def caller(self) -> Key | None:
        return self.signed.key if self.signed is not None else None

    @property
    def key_id(self) -> str | None:
        return self.caller.id if self.caller is not None else None

    @property
    def args(self) -> dict[str, str]:
        """The query string's values (the last of each name), percent-decoded, blanks kept."""
        cached: dict[str, str] | None = getattr(self, "_args", None)
        if cached is None:
            cached = dict(sigv4.query_pairs(self.request.query))
            self._args = cached
        return cached

    def header(self, name: str) -> str | None:
        return self.request.headers.get(name)

    def clear(self) -> None:
        super().clear()
        self._headers = S3Headers(self._headers)

    def set_default_headers(self) -> None:
        if not self.request_id:
            self.request_id = uuid.uuid4().hex[:16].upper()
        self.set_header("x-amz-request-id", self.request_id)
        self.set_header("x-amz-id-2", self.request_id)
        self.set_header("Server", "storage_server")

    def compute_etag(self) -> str | None:
        return None

    def authenticate(self, path: str) -> None:
        """Check the request's signature (header or presigned query), if it has one."""
        headers = {name.lower(): self.request.headers.get_list(name) for name in self.request.headers}
        request = sigv4.Request(self.request.method or "", path, self.request.query, headers)
        now = self.application.settings["clock"]()
        region = self.config.s3_api_region
        if "authorization" in headers:
            if not (self.request.headers.get("Authorization") or "").startswith(sigv4.ALGORITHM):
                raise S3Error("InvalidRequest", V2)
            self.signed = sigv4.verify_header(self.keyring, request, region, now)
        elif sigv4.is_presigned(self.request.query):
            self.signed = sigv4.verify_query(self.keyring, request, region, now)
        elif "AWSAccessKeyId" in self.args and "Signature" in self.args:
            raise S3Error("InvalidRequest", V2)

    async def authorize(self) -> None:
        """Raise AccessDenied unless the caller may do self.op on self.bucket."""
        key = self.caller
        if key is None:
            if self.op in ANONYMOUS and self.bucket is not None and await self._public(self.bucket):
                return
            raise S3Error("AccessDenied", "anonymous requests may only read objects of public buckets")
        self.require(ACCESS[self.op], self.bucket)

    def require(self, need: Access, bucket: str | None) -> None:
        key = self.caller
        if key is not None and not key.may(need, bucket):
            raise S3Error("AccessDenied", f"the key '{key.id}' may not do {self.op} here")

    async def _public(self, bucket: str) -> bool:
        try:
            return (await self.call(self.store.get_bucket, bucket, counted=False)).public
        except S3Error:
            return False

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call in a worker thread, its client errors raised as S3Errors."""
        try:
            return await IOLoop.current().run_in_executor(None, functools.partial(fn, *args, **kwargs))
        except Exception as exc:
            error = s3_error(exc)
            if error is None or error is exc:
                raise
            raise error from exc

    def send_xml(self, body: bytes, status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/xml")
        self.bytes_out += len(body)
        self.finish(body)

    def send_empty(self, status: int = 200) -> None:
        self.set_status(status)
        if status != 204:
            self.set_header("Content-Length", "0")
        self.finish()

    def resource(self) -> str:
        path = "/" + "/".join(p for p in (self.bucket, self.key) if p is not None)
        return urllib.parse.quote(path)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        error = exc if isinstance(exc, S3Error) else None
        if error is None:
            code = {400: "InvalidRequest", 405: "MethodNotAllowed", 413: "EntityTooLarge"}.get(
                status_code, "InternalError"
            )
            error = S3Error(code)
            if status_code == 404:
                error = S3Error("NoSuchKey")
        self.set_status(error.status)
        for name in [n for n in self._headers if n.lower().startswith(("x-amz-meta-", "etag", "last-mod"))]:
            self.clear_header(name)
        if self.request.method == "HEAD":
            self.finish()
            return
        self.set_header("Content-Type", "application/xml")
        self.finish(xml.error(error.code, error.message, self.resource(), self.request_id, error.extra))


def fail_answer(exc: BaseException) -> S3Error:
    """The answer for an exception raised while a body streamed in; a server fault is logged
    and answered InternalError, its text never sent."""
    error = s3_error(exc)
    if error is None:
        log.error("S3 request failed", exc_info=exc)
        return S3Error("InternalError")
    return error
