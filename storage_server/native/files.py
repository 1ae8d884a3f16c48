"""The file route: streamed uploads (raw or multipart, checksummed, conditional) and streamed
downloads (conditional, ranged), plus delete."""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
from collections.abc import Callable
from typing import ClassVar

from tornado.http1connection import HTTP1Connection
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.web import stream_request_body

from ..store.contract import Precondition, Reader, Upload
from ..store.errors import FileChanged
from ..store.records import FileRecord
from .base import BaseHandler, Op, StallWatch, client_errors
from .bodies import (
    MultipartBody,
    RawBody,
    check_content_type,
    check_filename,
    content_disposition,
    decoder_for,
    header_filename,
    is_generic,
    is_multipart,
    resolve_content_type,
)
from .conditional import Conditions, RangeNotSatisfiable, byte_range, etag, last_modified
from .digests import Checks
from .errors import ApiError, api_error
from .filedocs import FILE_OPS
from .guard import create_only
from .models import File, UploadResult
from .verify import Verifier, open_for_download, open_hot, read, report_damage, wants_verify
from .zerocopy import on_disk, send_file

log = logging.getLogger("storage_server")
NO_LIMIT = 1 << 62
DRAIN_LIMIT = 1 << 20  # bytes of body read before an early error is answered
READ_AHEAD = 1 << 20  # bytes read from disk per trip to a thread while downloading
READ_ATTEMPTS = 3  # opens of a file that keeps being replaced between its look and its read
# A body declared this small is held on the loop: one trip to a thread then starts, writes,
# checks and commits the upload, instead of one trip per step.
SMALL_BODY = 64 * 1024


def repr_digest(record: FileRecord) -> str:
    return f"sha-256=:{base64.b64encode(bytes.fromhex(record.sha256)).decode()}:"


@stream_request_body
class FileHandler(BaseHandler):
    """Upload (POST, PUT), download (GET, HEAD) and delete (DELETE) one file."""

    ops: ClassVar[dict[str, Op]] = FILE_OPS

    upload: Upload | None = None
    body: RawBody | MultipartBody | None = None
    checks: Checks | None = None
    early_error: ApiError | None = None
    stall: StallWatch | None = None
    held: list[bytes] | None = None  # a small body's chunks, stored in one go by `start`
    start: Callable[[list[bytes], str], FileRecord] | None = None

    async def prepare(self) -> None:
        self.conditions = Conditions.from_headers(self.request.headers)
        if self.request.method not in ("POST", "PUT"):
            await self.admit()
            return
        declared = self.request.headers.get("Content-Length")
        # isdigit() alone takes "²" and other non-ASCII digits, which int() refuses.
        length = int(declared) if declared and declared.isascii() and declared.isdigit() else None
        try:
            await self.admit()
            await self._begin(length)
        except ApiError as error:
            if length is None or length > DRAIN_LIMIT:
                raise  # answered now; Tornado closes the connection instead of reading the body
            # A small body is read (and dropped) first: closing a connection with unread data
            # resets it, and the client could lose the answer.
            self.early_error = error
        self.stall = StallWatch(self.config.stall_timeout, self._stalled)

    async def _begin(self, length: int | None) -> None:
        """Check the upload's headers, start it in the store and pick its body decoder."""
        limit = self.config.max_upload_size
        if limit is not None and length is not None and length > limit:
            raise ApiError("payload_too_large", f"uploads are limited to {limit} bytes")
        self.connection.set_max_body_size(NO_LIMIT)
        content_type = self.request.headers.get("Content-Type")
        with client_errors():  # bad headers fail before the body is read
            self.filename = header_filename(self.request.headers.get("X-Filename"))
            check_content_type(content_type)
            self.checks = Checks.from_headers(self.request.headers, multipart=is_multipart(content_type))
        bucket, key = self.path_args
        multipart = is_multipart(content_type)
        declared = None if multipart or content_type is None else check_content_type(content_type)
        start = functools.partial(
            self.store.begin_upload,
            bucket,
            key,
            size=None if multipart else length,
            room=length,
            content_type=declared if declared and not is_generic(declared) else None,
            precondition=self.precondition,
        )
        if length is not None and length <= SMALL_BODY:
            # Held on the loop, then started, written, checked and committed in one trip to a
            # thread (_store_small); its refusals come after its few bytes, as early errors do.
            self.held, self.start = [], functools.partial(self._store_small, start, length)
            return
        self.upload = await self.call(start)
        with client_errors():
            self.body = decoder_for(self.upload, content_type, length, self.checks)

    @property
    def precondition(self) -> Precondition | None:
        signed_create = self.grant is not None and not self.grant.upsert
        if not self.conditions.guards_writes:
            return create_only if signed_create else None
        if not signed_create:
            return self.conditions.check_write
        check = self.conditions.check_write

        def both(current: FileRecord | None) -> None:
            create_only(current)
            check(current)

        return both

    @property
    def connection(self) -> HTTP1Connection:
        conn = self.request.connection
        assert isinstance(conn, HTTP1Connection)
        return conn

    def _stalled(self) -> None:
        """Drop an upload that sent nothing for stall_timeout; a slow but steady one goes on."""
        log.info("aborting upload of %s: no data for %ss", self.request.path, self.config.stall_timeout)
        self._discard()
        self.connection.close()

    async def data_received(self, chunk: bytes) -> None:
        self._seen()
        if (self.body is None and self.held is None) or self._finished:
            return  # not an upload, or one already answered: the bytes are dropped
        self.bytes_in += len(chunk)
        limit = self.config.max_upload_size
        try:
            if limit is not None and self.bytes_in > limit:
                raise ApiError("payload_too_large", f"uploads are limited to {limit} bytes")
            if self.held is not None:  # Content-Length framing keeps it within SMALL_BODY
                self.held.append(chunk)
                return
            assert self.body is not None
            await self.call(self.body.feed, chunk)
            self._seen()
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        """Answer an error found while the body streams in; Tornado then drops the connection."""
        self._discard()
        error = api_error(exc)
        if error is None:
            log.error("upload of %s failed", self.request.path, exc_info=exc)
            error = ApiError("internal_error", "internal server error")
        self.send_error(error.status_code, exc_info=(type(error), error, None))

    def _seen(self) -> None:
        if self.stall is not None:
            self.stall.seen()

    def _discard(self) -> None:
        if self.stall is not None:
            self.stall.stop()
            self.stall = None
        upload, self.upload, self.body, self.held = self.upload, None, None, None
        if upload is not None:
            IOLoop.current().run_in_executor(None, upload.abort)

    def on_finish(self) -> None:
        self._discard()
        super().on_finish()

    def on_connection_close(self) -> None:
        self._discard()
        super().on_connection_close()

    async def post(self, bucket: str, key: str) -> None:
        if self.early_error is not None:
            raise self.early_error
        if self.stall is not None:
            self.stall.stop()
        if self.start is not None:  # a small body, held: stored now in one trip
            held, self.held = self.held or [], None
            record = await self.call(self.start, held, key)
            self.send_json(UploadResult(file=File.of(record)), 201)
            return
        upload, body = self.upload, self.body
        assert upload is not None
        assert body is not None
        # The body is complete: from here this method owns the upload, and a client that goes
        # away no longer aborts it (it is committed, or discarded on an error, regardless).
        self.upload = self.body = None
        try:
            record = await self.call(self._complete, upload, body, [], key)
        except BaseException:
            IOLoop.current().run_in_executor(None, upload.abort)
            raise
        self.send_json(UploadResult(file=File.of(record)), 201)

    def _store_small(
        self, start: Callable[[], Upload], length: int, held: list[bytes], key: str
    ) -> FileRecord:
        """In a worker thread: start the upload, write the held body, check and commit it."""
        upload = start()
        try:
            body = decoder_for(upload, self.request.headers.get("Content-Type"), length, self.checks)
            return self._complete(upload, body, held, key)
        except BaseException:
            upload.abort()
            raise

    def _complete(
        self, upload: Upload, body: RawBody | MultipartBody, held: list[bytes], key: str
    ) -> FileRecord:
        """In a worker thread: feed what was held, end the body, check its digests, commit."""
        for chunk in held:
            body.feed(chunk)
        part = body.finish()
        if self.checks is not None:
            self.checks.verify(upload.sha256())
        name = check_filename(part.filename) or self.filename or key.rsplit("/", 1)[-1]
        declared = (
            part.content_type if isinstance(body, MultipartBody) else self.request.headers.get("Content-Type")
        )
        content_type = resolve_content_type(check_content_type(declared), name)
        return upload.commit(content_type=content_type, name=name, precondition=self.precondition)

    put = post

    async def get(self, bucket: str, key: str) -> None:
        await self._send(bucket, key, with_body=True)

    async def head(self, bucket: str, key: str) -> None:
        await self._send(bucket, key, with_body=False)

    async def _send(self, bucket: str, key: str, *, with_body: bool) -> None:
        for _attempt in range(READ_ATTEMPTS):
            try:
                await self._send_version(bucket, key, with_body=with_body)
                return
            except FileChanged:
                # The key was overwritten between its look and its read (a backend that cannot
                # pin a version). Before any byte went out: answer the new version; after: cut
                # the body short, so the client sees a truncated transfer, never a mixed one.
                if self._headers_written:
                    log.info("%s changed while it was being sent; connection closed", self.request.path)
                    self.connection.close()
                    return
                self.clear()
        raise ApiError("storage_unavailable", "the file kept changing while it was read; try again")

    async def _send_version(self, bucket: str, key: str, *, with_body: bool) -> None:
        # A whole GET reads its first chunk along with the open: a small file costs one thread hop.
        whole = with_body and "Range" not in self.request.headers
        verify = wants_verify(self.request.headers) and whole
        first = self.config.chunk_size if whole else 0
        with client_errors():  # a hot file, when not verified, is opened here: no thread hop
            opened = None if verify else open_hot(self.store, bucket, key, first)
        if opened is None:
            opened = await self.call(open_for_download, self.store, bucket, key, first, verify)
        reader, head = opened
        try:
            record = reader.record
            self.set_header("ETag", etag(record))
            self.set_header("Last-Modified", last_modified(record))
            self.set_header("Accept-Ranges", "bytes")
            verdict = self.conditions.check_read(record)
            if verdict == 412:
                raise ApiError(
                    "precondition_failed", "the file does not match If-Match / If-Unmodified-Since"
                )
            if verdict == 304:
                self.set_status(304)
                return
            self.set_header("Content-Type", record.content_type)
            self.set_header("X-Content-Type-Options", "nosniff")
            self.set_header("Content-Disposition", content_disposition(record.name))
            try:
                span = byte_range(
                    self.request.headers.get("Range"), self.request.headers.get("If-Range"), record
                )
            except RangeNotSatisfiable:
                raise ApiError(
                    "range_not_satisfiable",
                    f"the file has {record.size} bytes",
                    {"Content-Range": f"bytes */{record.size}"},
                ) from None
            if span is None:
                first, length = 0, record.size
                self.set_header("Repr-Digest", repr_digest(record))
            else:
                first, length = span[0], span[1] - span[0] + 1
                self.set_status(206)
                self.set_header("Content-Range", f"bytes {span[0]}-{span[1]}/{record.size}")
            self.set_header("Content-Length", length)
            if with_body:
                if not whole:
                    reader.seek(first, length)
                await self._stream(reader, head, length, Verifier(record) if verify else None)
        finally:
            reader.close()

    async def _stream(self, reader: Reader, head: bytes, length: int, verifier: Verifier | None) -> None:
        """Send `length` bytes: `head` (read with the open), then from the reader READ_AHEAD bytes
        per trip to a thread, written and flushed chunk_size at a time. With a `verifier`, the
        last chunk goes out only if every byte matched the record."""
        chunk_size = self.config.chunk_size
        try:
            local = on_disk(reader) if verifier is None and self.config.sendfile else None
            if local is not None and length > len(head):
                await self._write(head)
                await self.flush()  # the headers, when there was no head to send
                self.bytes_out += await send_file(
                    self.connection, local.fileno(), local.offset, length - len(head)
                )
                return
            block = head
            if verifier is not None:
                verifier.update(head)  # one chunk at most; the rest is hashed where it is read
            while True:
                length -= len(block)
                if verifier is not None and length <= 0 and not verifier.matches():
                    await self._write(block[: max(len(block) - chunk_size, 0)])
                    await self._cut(verifier)
                    return
                await self._write(block)
                if length <= 0:
                    return
                block = await self.call(read, reader, min(max(READ_AHEAD, chunk_size), length), verifier)
                if not block:
                    raise OSError("the file ended early")  # cannot happen: files are never written in place
        except StreamClosedError:
            pass  # the client went away

    async def _write(self, block: bytes) -> None:
        chunk_size = self.config.chunk_size
        for start in range(0, len(block), chunk_size):
            self.write(block[start : start + chunk_size])
            await self.flush()
            # flush() is already done when the socket took the chunk: yield, or one fast
            # download starves every other request on this worker.
            await asyncio.sleep(0)

    async def _cut(self, verifier: Verifier) -> None:
        """The bytes sent do not match the record: mark the file damaged, then close the
        connection, so that the client sees a truncated body, never a complete wrong one."""
        try:
            await IOLoop.current().run_in_executor(None, report_damage, self.store, verifier)
        except Exception:
            log.exception("cannot mark %s damaged", self.request.path)
        finally:
            self.connection.close()

    async def delete(self, bucket: str, key: str) -> None:
        await self.call(self.store.delete_file, bucket, key, precondition=self.precondition)
        self.set_status(204)
        self.finish()
