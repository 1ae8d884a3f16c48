"""The native JSON API: its route table and its small handlers (health, buckets, listings, batch
delete, copy and move, damaged files, the OpenAPI document, Swagger UI and metrics; the file
route is in native/files.py). `make_app` builds the application."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from tornado.web import Application, RequestHandler, StaticFileHandler

from . import __version__, telemetry
from .auth import signing
from .auth.keyring import Access, Keyring
from .native.base import BaseHandler, Op, client_errors
from .native.conditional import Conditions
from .native.docs import DocsHandler, swagger_assets
from .native.errors import ApiError, api_error
from .native.filedocs import CONDITIONAL
from .native.files import FileHandler
from .native.guard import OPEN, Rule
from .native.models import (
    BatchDelete,
    BatchDeleteResult,
    Bucket,
    BucketCreate,
    BucketUpdate,
    DamagedFile,
    DamagedList,
    DamagedQuery,
    DeleteResult,
    File,
    Health,
    Listing,
    ListQuery,
    SignedUrl,
    SignRequest,
    TransferRequest,
    Unhealthy,
    UploadResult,
)
from .settings import Settings
from .store.contract import Store
from .store.keys import validate_key
from .tus.handlers import CreationHandler, UploadHandler

API = "/api/v1"


class NotFoundHandler(BaseHandler):
    async def prepare(self) -> None:
        raise ApiError("not_found", f"no route for {self.request.path}")


class HealthHandler(BaseHandler):
    ops: ClassVar[dict[str, Op]] = {
        "get": Op("Is the storage path writable?", response=Health, errors=(503,))
    }

    async def get(self) -> None:
        if await self.call(self.store.is_writable):
            self.send_json(Health(status="healthy", version=__version__))
        else:
            problem = Unhealthy(
                version=__version__, detail="the storage path is not writable", code="storage_unavailable"
            )
            self.send_json(problem, 503)


class BucketsHandler(BaseHandler):
    ops: ClassVar[dict[str, Op]] = {
        "post": Op(
            "Create a bucket (200 with the existing one, untouched, if the name is taken)",
            ok=201,
            body=BucketCreate,
            response=Bucket,
            errors=(400, 422),
            also={200: "The bucket already existed"},
        ),
        "get": Op("All buckets, sorted by name", response=list[Bucket]),
    }

    async def post(self) -> None:
        req = self.parse(BucketCreate)
        self.authorize(Access.ADMIN, req.name)
        bucket, created = await self.call(
            self.store.create_bucket,
            req.name,
            public=req.public,
            description=req.description,
            file_size_limit=req.file_size_limit,
            allowed_mime_types=req.allowed_mime_types,
        )
        self.send_json(Bucket.of(bucket), 201 if created else 200)

    async def get(self) -> None:
        buckets = await self.call(self.store.list_buckets)
        self.send_json([Bucket.of(b) for b in buckets if self.key is None or self.key.sees(b.name)])


class BucketHandler(BaseHandler):
    ops: ClassVar[dict[str, Op]] = {
        "get": Op("One bucket, with its file count and total size", response=Bucket, errors=(400, 404)),
        "patch": Op(
            "Change `public` and/or `description`", body=BucketUpdate, response=Bucket, errors=(400, 404, 422)
        ),
        "delete": Op("Delete a bucket and every file in it", ok=204, errors=(400, 404)),
    }
    ops["put"] = ops["patch"]

    async def get(self, name: str) -> None:
        self.send_json(Bucket.of(await self.call(self.store.get_bucket, name)))

    async def patch(self, name: str) -> None:
        changes = self.parse(BucketUpdate).changes()
        self.send_json(Bucket.of(await self.call(self.store.update_bucket, name, changes)))

    put = patch

    async def delete(self, name: str) -> None:
        await self.call(self.store.delete_bucket, name)
        self.set_status(204)
        self.finish()


def encode_cursor(key: str) -> str:
    """A page cursor: the hex of the last key's UTF-8 bytes, a position in byte order."""
    return key.encode("utf-8").hex()


def decode_cursor(cursor: str) -> bytes:
    try:
        return bytes.fromhex(cursor)
    except ValueError:
        raise ApiError("invalid_cursor", "the cursor is not one this service handed out") from None


class ListingHandler(BaseHandler):
    ops: ClassVar[dict[str, Op]] = {
        "get": Op(
            "List files by path in byte order, a page at a time (S3 ListObjectsV2 style)",
            query=ListQuery,
            response=Listing,
            errors=(400, 404, 422),
        )
    }

    async def get(self, name: str) -> None:
        query = self.parse_query(ListQuery)
        after = decode_cursor(query.cursor) if query.cursor else None
        page = await self.call(
            self.store.list_files,
            name,
            prefix=query.prefix,
            delimited=query.delimiter == "/",
            limit=query.limit,
            after=after,
        )
        listing = Listing(
            bucket=name,
            prefix=query.prefix,
            delimiter=query.delimiter or None,
            files=[File.of(f) for f in page.files],
            folders=page.folders,
            next_cursor=encode_cursor(page.next_after) if page.next_after is not None else None,
        )
        self.send_json(listing)


class BatchDeleteHandler(BaseHandler):
    ops: ClassVar[dict[str, Op]] = {
        "post": Op(
            "Delete up to 1000 files; each gets the status a single DELETE would have",
            body=BatchDelete,
            response=BatchDeleteResult,
            errors=(400, 404, 422),
        )
    }

    async def post(self, name: str) -> None:
        req = self.parse(BatchDelete)
        await self.call(self.store.check_bucket, name)  # 404 for the whole batch
        results = await self.call(_delete_each, self.store, name, req.paths)
        self.send_json(BatchDeleteResult(results=results))


def _delete_each(store: Store, bucket: str, paths: list[str]) -> list[DeleteResult]:
    results = []
    for path in paths:
        try:
            store.delete_file(bucket, path)
            results.append(DeleteResult(path=path, status=204))
        except Exception as exc:
            error = api_error(exc)
            if error is None:
                raise
            results.append(
                DeleteResult(path=path, status=error.status_code, code=error.code, detail=error.detail)
            )
    return results


class TransferHandler(BaseHandler):
    """Copy or move one file, within a bucket or across buckets."""

    verb = ""

    async def post(self) -> None:
        req = self.parse(TransferRequest)
        # A copy reads its source; a move also deletes it.
        self.authorize(Access.READ if self.verb == "copy" else Access.WRITE, req.source.bucket)
        self.authorize(Access.WRITE, req.destination.bucket)
        conditions = Conditions.from_headers(self.request.headers)
        fn = self.store.copy_file if self.verb == "copy" else self.store.move_file
        record = await self.call(
            fn,
            req.source.bucket,
            req.source.path,
            req.destination.bucket,
            req.destination.path,
            precondition=conditions.check_write if conditions.guards_writes else None,
        )
        self.send_json(UploadResult(file=File.of(record)))


class CopyHandler(TransferHandler):
    verb = "copy"
    ops: ClassVar[dict[str, Op]] = {
        "post": Op(
            "Copy a file (bytes and metadata) to another path or bucket; conditions apply to the destination",
            body=TransferRequest,
            response=UploadResult,
            errors=(400, 404, 409, 412, 422, 507),
            headers=CONDITIONAL,
        )
    }


class MoveHandler(TransferHandler):
    verb = "move"
    ops: ClassVar[dict[str, Op]] = {
        "post": Op(
            "Move a file to another path or bucket in one atomic rename; conditions apply to the destination",
            body=TransferRequest,
            response=UploadResult,
            errors=(400, 404, 409, 412, 422),
            headers=CONDITIONAL,
        )
    }


class SignHandler(BaseHandler):
    ops: ClassVar[dict[str, Op]] = {
        "post": Op(
            "A signed URL for one file: GET (download) or PUT (upload) without a key, until it expires",
            body=SignRequest,
            response=SignedUrl,
            errors=(400, 401, 403, 422),
        )
    }

    async def post(self, bucket: str, path: str) -> None:
        req = self.parse(SignRequest)
        with client_errors():
            validate_key(path)
        await self.call(self.store.check_bucket, bucket)
        if self.key is None:
            raise ApiError("bad_request", "signed URLs need keys: the service has no STORAGE_KEYS_FILE")
        self.authorize(Access.READ if req.method == "GET" else Access.WRITE, bucket)
        expires = int(self.application.settings["clock"]()) + req.expires_in
        query = signing.sign(self.key, req.method, bucket, path, expires, req.upsert and req.method == "PUT")
        url = f"{API}/files/{bucket}/{urllib.parse.quote(path, safe='/')}?{query}"
        self.send_json(SignedUrl(url=url, expires_at=datetime.fromtimestamp(expires, UTC)))


class DamagedHandler(BaseHandler):
    ops: ClassVar[dict[str, Op]] = {
        "get": Op(
            "Files whose stored bytes no longer match the checksum taken at upload (admin)",
            query=DamagedQuery,
            response=DamagedList,
            errors=(400, 404, 422),
            notes="Found by the scrub (`python run.py scrub`, or the background passes) or by a "
            "verified read (`X-Verify: sha256`); a file leaves the list when it is uploaded again "
            "or deleted. See docs/bitrot.md.",
        )
    }

    async def get(self) -> None:
        query = self.parse_query(DamagedQuery)
        found = await self.call(self.store.list_damaged, query.bucket)
        seen = [d for d in found if self.key is None or self.key.sees(d.bucket)]
        self.send_json(DamagedList(files=[DamagedFile.of(d) for d in seen]))


class OpenAPIHandler(BaseHandler):
    ops: ClassVar[dict[str, Op]] = {"get": Op("This document")}
    document: ClassVar[bytes] = b""

    def get(self) -> None:
        if not self.document:  # made on the first request: a worker does not pay its memory at start
            from .native import openapi

            OpenAPIHandler.document = json.dumps(openapi.document(ROUTES, ACCESS)).encode()
        self.set_header("Content-Type", "application/json")
        self.finish(self.document)


class MetricsHandler(BaseHandler):
    ops: ClassVar[dict[str, Op]] = {"get": Op("Prometheus metrics, summed over all workers")}

    async def get(self) -> None:
        body = await self.call(telemetry.render, self.store)
        self.set_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.finish(body)


ROUTES: list[tuple[str, type[BaseHandler]]] = [
    ("/health", HealthHandler),
    (f"{API}/health", HealthHandler),
    (f"{API}/buckets", BucketsHandler),
    (f"{API}/buckets/{{bucket}}", BucketHandler),
    (f"{API}/buckets/{{bucket}}/files", ListingHandler),
    (f"{API}/buckets/{{bucket}}/delete", BatchDeleteHandler),
    (f"{API}/files/{{bucket}}/{{path}}", FileHandler),
    (f"{API}/sign/{{bucket}}/{{path}}", SignHandler),
    (f"{API}/copy", CopyHandler),
    (f"{API}/move", MoveHandler),
    (f"{API}/damaged", DamagedHandler),
    (f"{API}/upload/resumable", CreationHandler),
    (f"{API}/upload/resumable/{{id}}", UploadHandler),
    ("/openapi.json", OpenAPIHandler),
    ("/metrics", MetricsHandler),
    ("/docs", DocsHandler),
]

READ = Rule(Access.READ, "path")
WRITE = Rule(Access.WRITE, "path")
ADMIN = Rule(Access.ADMIN, "path")
FILE_READ = Rule(Access.READ, "path", public=True, signed="GET")
FILE_WRITE = Rule(Access.WRITE, "path", signed="PUT")
TUS = Rule(Access.WRITE, "body", signed="PUT")
# Who may do what, for every route and method: the one access table (tests/test_access.py walks
# it with every kind of key). Rules with scope "body" are checked by their handler with
# `authorize` once the body names the bucket.
ACCESS: dict[str, dict[str, Rule]] = {
    "/health": {"GET": OPEN},
    f"{API}/health": {"GET": OPEN},
    f"{API}/buckets": {"GET": Rule(Access.READ), "POST": Rule(Access.ADMIN, "body")},
    f"{API}/buckets/{{bucket}}": {"GET": READ, "PATCH": ADMIN, "PUT": ADMIN, "DELETE": ADMIN},
    f"{API}/buckets/{{bucket}}/files": {"GET": READ},
    f"{API}/buckets/{{bucket}}/delete": {"POST": WRITE},
    f"{API}/files/{{bucket}}/{{path}}": {
        "GET": FILE_READ,
        "HEAD": FILE_READ,
        "POST": FILE_WRITE,
        "PUT": FILE_WRITE,
        "DELETE": WRITE,
    },
    f"{API}/sign/{{bucket}}/{{path}}": {"POST": READ},  # and WRITE for a PUT URL, in the handler
    f"{API}/copy": {"POST": Rule(Access.READ, "body")},
    f"{API}/damaged": {"GET": Rule(Access.ADMIN)},  # a key limited to buckets sees only theirs
    f"{API}/move": {"POST": Rule(Access.WRITE, "body")},
    # tus: the bucket is in Upload-Metadata (creation) or the staged upload; a signed PUT URL of
    # exactly that file admits too.
    f"{API}/upload/resumable": {"POST": TUS},
    f"{API}/upload/resumable/{{id}}": {"HEAD": TUS, "PATCH": TUS, "DELETE": TUS},
    "/openapi.json": {"GET": OPEN},
    "/metrics": {"GET": Rule(Access.READ)},
    "/docs": {"GET": OPEN},
}


def pattern(template: str) -> str:
    """The URL regex of a path template: `{path}` may span folders, other names may not."""
    return template.replace("{path}", "(.+)").replace("{bucket}", "([^/]+)").replace("{id}", "([^/]+)") + "$"


def make_app(
    config: Settings, store: Store, keyring: Keyring | None = None, clock: Callable[[], float] = time.time
) -> Application:
    """The Tornado application with every route, sharing one store; the keys of
    config.keys_file unless `keyring` is given (raise KeysFileError when it cannot be used)."""
    deps = {"store": store, "config": config}
    routes: list[Any] = [(pattern(t), h, {**deps, "route": t, "rules": ACCESS[t]}) for t, h in ROUTES]
    routes.append((r"/docs/static/(.*)", StaticFileHandler, {"path": str(swagger_assets())}))
    in_flight: set[RequestHandler] = set()
    return Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args={**deps, "route": "unmatched", "rules": {}},
        in_flight=in_flight,
        keyring=keyring if keyring is not None else Keyring.load(config.keys_file),
        clock=clock,
        log_function=lambda handler: telemetry.record(handler, config.access_log),
    )
