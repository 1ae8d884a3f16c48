"""One tus chunk streamed into the store: the upload's last part taken exclusively (a concurrent
PATCH gets 423), the body written through in ~1 MiB writes off the event loop, and the part
committed when the body ends, or when the client goes away mid-way (what arrived is kept, so the
offset moves forward, never past what was received), except with `Upload-Checksum`, where a
chunk is kept whole and verified or not at all."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from tornado.ioloop import IOLoop

from ..native.base import StallWatch
from ..native.errors import ApiError, api_error
from ..store.contract import PartUpload, Store
from ..store.records import PartRecord, StagedRecord
from . import protocol
from .base import NO_LIMIT, TusHandler
from .state import TusUpload

log = logging.getLogger("storage_server")
FLUSH = 1 << 20  # bytes buffered before a write to the store
DRAIN_LIMIT = 1 << 20  # a body this small is read (and dropped) before an early error is answered
_salvaging: set[asyncio.Task[None]] = set()


def declared_length(headers: Any) -> int | None:
    value = headers.get("Content-Length")
    return int(value) if value and value.isascii() and value.isdigit() else None


class Receiving(TusHandler):
    """A tus request that may carry a chunk (PATCH, and POST with creation-with-upload)."""

    part: PartUpload | None = None
    upload: TusUpload | None = None
    checksum: protocol.Checksum | None = None
    early_error: ApiError | None = None
    stall: StallWatch | None = None

    def initialize(self, *args: Any, **kwargs: Any) -> None:
        super().initialize(*args, **kwargs)
        self.room = 0
        self.received = 0
        self.appending = False
        self.buffer: list[bytes] = []  # chunks received and not yet written
        self.buffered = 0
        self.hasher: Any = None
        self._io = asyncio.Lock()

    async def guarded(self, step: Any) -> None:
        """Run prepare's checks; an error is answered now for a large body, after reading a small
        one (closing a connection with unread data resets it, and the client could lose the
        answer)."""
        self.connection.set_max_body_size(NO_LIMIT)
        try:
            await step()
        except ApiError as error:
            length = declared_length(self.request.headers)
            if length is None or length > DRAIN_LIMIT:
                raise
            self.early_error = error
        self.stall = StallWatch(self.config.stall_timeout, self._stalled)

    async def open_part(self, upload: TusUpload, offset: int, room: int) -> None:
        """Take the upload's last part for this chunk, at `offset` (409 unless it is the current
        one, once the part is held: another PATCH may have moved it meanwhile)."""
        for _attempt in range(3):
            number, append = upload.next_part(self.store.appends_in_place)
            part, staged = await self.call(_take_part, self.store, upload.id, number, append)
            try:
                fresh = TusUpload.of(staged)
                fresh = dataclasses.replace(fresh, length=upload.length)  # a deferred one, given now
            except BaseException:
                IOLoop.current().run_in_executor(None, part.abort)
                raise
            if fresh.offset != offset:
                IOLoop.current().run_in_executor(None, part.abort)
                raise mismatch(fresh.offset)
            if fresh.part_sizes == upload.part_sizes:
                self.part, self.upload, self.appending = part, fresh, append
                self.room = room
                if self.checksum is not None:
                    self.hasher = self.checksum.hasher()
                return
            IOLoop.current().run_in_executor(None, part.abort)
            upload = fresh
        raise ApiError("upload_locked", "the upload keeps changing; retry")

    def _stalled(self) -> None:
        """Keep what a client that stopped sending (but not hung up) sent, after stall_timeout."""
        timeout = self.config.stall_timeout
        log.info("tus chunk to %s stalled for %ss: keeping what arrived", self.request.path, timeout)
        self._salvage()
        self.connection.close()

    async def data_received(self, chunk: bytes) -> None:
        if self.stall is not None:
            self.stall.seen()
        if self.part is None or self._finished:
            return  # no chunk expected, or already answered: the bytes are dropped
        self.bytes_in += len(chunk)
        try:
            async with self._io:
                part = self.part
                if part is None:
                    return
                self.received += len(chunk)
                if self.received > self.room:
                    raise ApiError("past_upload_length", "the chunk goes past the upload's Upload-Length")
                if self.hasher is not None:
                    self.hasher.update(chunk)
                self.buffer.append(chunk)
                self.buffered += len(chunk)
                if self.buffered >= FLUSH:
                    await self.call(part.write, self._take())
            if self.stall is not None:
                self.stall.seen()
        except Exception as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        """An error while the chunk streams in: nothing of it is kept; answer the error."""
        self._drop()
        error = api_error(exc)
        if error is None:
            log.error("tus chunk to %s failed", self.request.path, exc_info=exc)
            error = ApiError("internal_error", "internal server error")
        if not self._finished:
            self.send_error(error.status_code, exc_info=(type(error), error, None))

    def _take(self) -> bytes:
        """The chunks buffered, as one (joined only when there are several: Tornado hands over
        up to a MiB at a time, written as it comes)."""
        chunks, self.buffer, self.buffered = self.buffer, [], 0
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _drop(self) -> None:
        self._stop_watch()
        part, self.part = self.part, None
        if part is not None:
            IOLoop.current().run_in_executor(None, part.abort)

    def _stop_watch(self) -> None:
        if self.stall is not None:
            self.stall.stop()
            self.stall = None

    async def finish_chunk(self) -> TusUpload:
        """The body has ended: commit the chunk (after checking its Upload-Checksum: 460, and the
        chunk dropped, on a mismatch) and return the upload with its new offset."""
        self._stop_watch()
        async with self._io:
            part, upload = self.part, self.upload
            self.part = None
            assert part is not None
            assert upload is not None
            try:
                checksum = self.checksum
                if checksum is not None and self.hasher.digest() != checksum.digest:
                    raise ApiError("checksum_mismatch", "the chunk does not match Upload-Checksum")
                if self.received == 0:
                    await self.call(part.abort)
                    return upload
                record = await self.call(_write_and_commit, part, self._take())
            except BaseException:
                IOLoop.current().run_in_executor(None, part.abort)
                raise
        sizes = upload.part_sizes[:-1] if self.appending else upload.part_sizes
        return dataclasses.replace(
            upload,
            offset=upload.offset + self.received,
            part_sizes=(*sizes, record.size),
            changed_at=record.created_at,
        )

    def _salvage(self) -> None:
        """The client went away mid-chunk: commit what arrived (drop it with a checksum)."""
        self._stop_watch()
        if self.part is None:
            return
        task = asyncio.ensure_future(self._keep_received())
        _salvaging.add(task)
        task.add_done_callback(_salvaging.discard)

    async def _keep_received(self) -> None:
        async with self._io:
            part, self.part = self.part, None
            if part is None:
                return
            data = self._take()
            loop = IOLoop.current()
            try:
                if self.checksum is not None or self.received == 0:
                    await loop.run_in_executor(None, part.abort)
                    return
                if data:
                    await loop.run_in_executor(None, part.write, data)
                await loop.run_in_executor(None, part.commit)
            except Exception:
                log.warning("cannot keep the cut chunk of %s", self.request.path, exc_info=True)
                await loop.run_in_executor(None, part.abort)

    def on_connection_close(self) -> None:
        self._salvage()
        super().on_connection_close()

    def on_finish(self) -> None:
        self._drop()
        super().on_finish()


def _take_part(store: Store, upload_id: str, number: int, append: bool) -> tuple[PartUpload, StagedRecord]:
    """The part, held exclusively, and the staged upload as it stands once it is held, in one
    trip to a thread."""
    part = store.begin_part(upload_id, number, exclusive=True, append=append)
    try:
        return part, store.get_staged(upload_id)
    except BaseException:
        part.abort()
        raise


def _write_and_commit(part: PartUpload, data: bytes) -> PartRecord:
    """The last bytes of a chunk and its commit, in one trip to a thread."""
    if data:
        part.write(data)
    return part.commit()


def mismatch(current: int) -> ApiError:
    return ApiError("offset_mismatch", f"the upload's offset is {current}", {"Upload-Offset": str(current)})
