"""HTTP handlers and the route table: parse the request, call the store off the event loop,
serialize the answer. Every error leaves as one JSON shape, {"detail", "code"}."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from tornado.http1connection import HTTP1Connection
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.web import Application, HTTPError, RequestHandler, stream_request_body

from . import __version__, blobfs
from .blobfs import BlobReader, BlobStore, Upload
from .models import Bucket, BucketCreate, BucketUpdate, ErrorBody, Health, Unhealthy, UploadResult
from .settings import Settings
from .uploads import (
    BadUpload,
    MultipartBody,
    RawBody,
    check_content_type,
    check_filename,
    decoder_for,
    header_filename,
    resolve_content_type,
)

log = logging.getLogger("storage_server")
T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

API = "/api/v1"
JSON = "application/json"
NO_LIMIT = 1 << 62

# The one table from store errors to HTTP answers; the most specific class listed wins.
ERRORS: dict[type[Exception], tuple[int, str]] = {
    blobfs.InvalidName: (400, "invalid_bucket_name"),
    blobfs.InvalidKey: (400, "invalid_key"),
    blobfs.BucketNotFound: (404, "bucket_not_found"),
    blobfs.FileNotFound: (404, "file_not_found"),
    blobfs.Conflict: (409, "conflict"),
    blobfs.InsufficientStorage: (507, "insufficient_storage"),
    blobfs.Unavailable: (503, "storage_unavailable"),
    blobfs.StorageError: (500, "internal_error"),
}
# Codes for errors that Tornado raises itself (unknown route, wrong method, bad framing).
STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    500: "internal_error",
}


class ApiError(HTTPError):
    """An error answer: status, a stable machine-readable code and a human-readable detail."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(status)
        self.code = code
        self.detail = detail


def api_error(exc: Exception) -> ApiError | None:
    """The answer for an exception the client caused or can act on; None for a server fault."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, BadUpload):
        return ApiError(400, exc.code, str(exc))
    for cls in type(exc).__mro__:
        if cls in ERRORS and cls is not blobfs.StorageError:
            status, code = ERRORS[cls]
            return ApiError(status, code, str(exc))
    return None


@contextlib.contextmanager
def client_errors() -> Iterator[None]:
    """Re-raise the exceptions api_error knows as ApiErrors; let server faults through."""
    try:
        yield
    except Exception as exc:
        error = api_error(exc)
        if error is None or error is exc:
            raise
        raise error from exc


def content_disposition(name: str) -> str:
    """RFC 6266 header with an ASCII fallback and the exact UTF-8 name (RFC 8187)."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in name)
    return f"inline; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"


class BaseHandler(RequestHandler):
    def initialize(self, store: BlobStore, config: Settings) -> None:
        self.store = store
        self.config = config
        self.application.settings["in_flight"].add(self)

    def on_finish(self) -> None:
        self.application.settings["in_flight"].discard(self)

    def on_connection_close(self) -> None:
        self.application.settings["in_flight"].discard(self)
        super().on_connection_close()

    def compute_etag(self) -> str | None:
        return None  # JSON answers are not cached; downloads set their own strong ETag

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call in a worker thread, turning its errors into ApiErrors."""
        with client_errors():
            return await IOLoop.current().run_in_executor(None, functools.partial(fn, *args, **kwargs))

    def parse(self, model: type[M]) -> M:
        try:
            return model.model_validate_json(self.request.body or b"")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors(include_url=False)
            )
            raise ApiError(422, "validation_error", problems) from None

    def send_json(self, body: BaseModel | list[Bucket], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", JSON)
        if isinstance(body, list):
            self.finish(b"[" + b",".join(b.model_dump_json().encode() for b in body) + b"]")
        else:
            self.finish(body.model_dump_json())

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            body = ErrorBody(detail=exc.detail, code=exc.code)
        else:
            reason = self._reason if status_code != 500 else "internal server error"
            body = ErrorBody(detail=reason, code=STATUS_CODES.get(status_code, "error"))
        self.set_header("Content-Type", JSON)
        self.finish(body.model_dump_json())


class NotFoundHandler(BaseHandler):
    def prepare(self) -> None:
        raise ApiError(404, "not_found", f"no route for {self.request.path}")


class HealthHandler(BaseHandler):
    async def get(self) -> None:
        if await self.call(self.store.is_writable):
            self.send_json(Health(status="healthy", version=__version__))
        else:
            problem = Unhealthy(
                version=__version__, detail="the storage path is not writable", code="storage_unavailable"
            )
            self.send_json(problem, 503)


class BucketsHandler(BaseHandler):
    async def post(self) -> None:
        req = self.parse(BucketCreate)
        bucket, created = await self.call(
            self.store.create_bucket, req.name, public=req.public, description=req.description
        )
        self.send_json(bucket, 201 if created else 200)

    async def get(self) -> None:
        self.send_json(await self.call(self.store.list_buckets))


class BucketHandler(BaseHandler):
    async def get(self, name: str) -> None:
        self.send_json(await self.call(self.store.get_bucket, name))

    async def patch(self, name: str) -> None:
        req = self.parse(BucketUpdate)
        changes = req.model_dump(include=req.model_fields_set)
        self.send_json(await self.call(self.store.update_bucket, name, changes))

    put = patch

    async def delete(self, name: str) -> None:
        await self.call(self.store.delete_bucket, name)
        self.set_status(204)
        self.finish()


@stream_request_body
class FileHandler(BaseHandler):
    """Upload (POST, PUT), download (GET) and delete (DELETE) one file."""

    upload: Upload | None = None
    body: RawBody | MultipartBody | None = None
    _stall: asyncio.TimerHandle | None = None

    async def prepare(self) -> None:
        if self.request.method not in ("POST", "PUT"):
            return
        limit = self.config.max_upload_size
        declared = self.request.headers.get("Content-Length")
        length = int(declared) if declared and declared.isdigit() else None
        if limit is not None and length is not None and length > limit:
            raise ApiError(413, "payload_too_large", f"uploads are limited to {limit} bytes")
        self.connection.set_max_body_size(NO_LIMIT)
        content_type = self.request.headers.get("Content-Type")
        with client_errors():  # bad headers fail before the body is read
            self.filename = header_filename(self.request.headers.get("X-Filename"))
            check_content_type(content_type)
        bucket, key = self.path_args
        self.upload = await self.call(self.store.begin_upload, bucket, key, length)
        with client_errors():
            self.body = decoder_for(self.upload, content_type, length)
        self.received = 0
        self.last_data = IOLoop.current().time()
        self._watch_stall()

    def _watch_stall(self) -> None:
        """Drop an upload that sent nothing for stall_timeout; a slow but steady one goes on."""
        timeout = self.config.stall_timeout
        idle = IOLoop.current().time() - self.last_data
        if idle < timeout:
            self._stall = asyncio.get_running_loop().call_later(timeout - idle, self._watch_stall)
            return
        log.info("aborting upload of %s: no data for %ss", self.request.path, timeout)
        self._discard()
        self.connection.close()

    @property
    def connection(self) -> HTTP1Connection:
        conn = self.request.connection
        assert isinstance(conn, HTTP1Connection)
        return conn

    async def data_received(self, chunk: bytes) -> None:
        if self.body is None or self._finished:
            return
        self.received += len(chunk)
        limit = self.config.max_upload_size
        try:
            if limit is not None and self.received > limit:
                raise ApiError(413, "payload_too_large", f"uploads are limited to {limit} bytes")
            await self.call(self.body.feed, chunk)
            self.last_data = IOLoop.current().time()
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        """Answer an error found while the body streams in; Tornado then drops the connection."""
        self._discard()
        error = api_error(exc)
        if error is None:
            log.error("upload of %s failed", self.request.path, exc_info=exc)
            error = ApiError(500, "internal_error", "internal server error")
        self.send_error(error.status_code, exc_info=(type(error), error, None))

    def _discard(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        upload, self.upload, self.body = self.upload, None, None
        if upload is not None:
            IOLoop.current().run_in_executor(None, upload.abort)

    def on_finish(self) -> None:
        self._discard()
        super().on_finish()

    def on_connection_close(self) -> None:
        self._discard()
        super().on_connection_close()

    async def post(self, bucket: str, key: str) -> None:
        if self._stall is not None:
            self._stall.cancel()
        upload, body = self.upload, self.body
        assert upload is not None
        assert body is not None
        part = await self.call(body.finish)
        with client_errors():
            name = check_filename(part.filename) or self.filename or key.rsplit("/", 1)[-1]
            declared = (
                part.content_type
                if isinstance(body, MultipartBody)
                else self.request.headers.get("Content-Type")
            )
            content_type = resolve_content_type(check_content_type(declared), name)
        record = await self.call(upload.commit, content_type, name)
        self.upload = None
        self.send_json(UploadResult(file=record), 201)

    put = post

    async def get(self, bucket: str, key: str) -> None:
        reader: BlobReader = await self.call(self.store.open_file, bucket, key)
        try:
            record = reader.record
            self.set_header("Content-Type", record.content_type)
            self.set_header("Content-Length", record.size)
            self.set_header("ETag", record.etag)
            self.set_header("Last-Modified", record.updated_at)
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Content-Disposition", content_disposition(record.name))
            loop = IOLoop.current()
            remaining = record.size
            while remaining > 0:
                chunk = await loop.run_in_executor(None, reader.read, min(self.config.chunk_size, remaining))
                if not chunk:
                    raise OSError("the file ended early")  # cannot happen: files are never written in place
                remaining -= len(chunk)
                self.write(chunk)
                await self.flush()
                # flush() is already done when the socket took the chunk: yield, or one fast
                # download starves every other request on this worker.
                await asyncio.sleep(0)
        except StreamClosedError:
            pass  # the client went away
        finally:
            reader.close()

    async def delete(self, bucket: str, key: str) -> None:
        await self.call(self.store.delete_file, bucket, key)
        self.set_status(204)
        self.finish()


def make_app(config: Settings, store: BlobStore) -> Application:
    """The Tornado application with every route, sharing one store."""
    deps = {"store": store, "config": config}
    routes: list[tuple[str, type[RequestHandler], dict[str, Any]]] = [
        (r"/health", HealthHandler, deps),
        (rf"{API}/health", HealthHandler, deps),
        (rf"{API}/buckets", BucketsHandler, deps),
        (rf"{API}/buckets/([^/]+)", BucketHandler, deps),
        (rf"{API}/files/([^/]+)/(.+)", FileHandler, deps),
    ]
    return Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=deps,
        in_flight=set(),
        log_function=log_request,
    )


def log_request(handler: RequestHandler) -> None:
    status = handler.get_status()
    level = logging.INFO if status < 500 else logging.ERROR
    access = logging.getLogger("storage_server.access")
    if access.isEnabledFor(level):
        access.log(
            level,
            "%s %s %d %.1fms",
            handler.request.method,
            handler.request.uri,
            status,
            1000.0 * handler.request.request_time(),
        )
