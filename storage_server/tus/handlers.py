"""The tus front door's two routes: creation (`POST /api/v1/upload/resumable`, with or without a
first chunk) and an upload (`HEAD` its offset, `PATCH` a chunk, `DELETE` it). When the offset
reaches the length, the file is committed through the store's ordinary commit."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt

from tornado.web import stream_request_body

from ..native.base import client_errors
from ..native.bodies import check_content_type, check_filename, resolve_content_type
from ..native.errors import ApiError
from ..store.errors import PreconditionFailed
from ..store.keys import validate_key
from ..store.limits import Limits
from ..store.records import FileRecord
from . import protocol, state
from .receive import Receiving, mismatch
from .state import TusUpload

PREFIX = "/api/v1/upload/resumable"


def _create_only(current: FileRecord | None) -> None:
    if current is not None:
        raise PreconditionFailed(
            "the file appeared while it was being uploaded, and the upload was created without "
            "x-upsert: true; nothing was replaced (DELETE the upload, or upload again with x-upsert)"
        )


class UploadBase(Receiving):
    async def complete(self, upload: TusUpload) -> None:
        """Commit a complete upload as its file (create-only unless it was made with upsert).
        On an error the staged upload stays, so the same PATCH gets the same answer again."""
        await self.call(
            self.store.complete_staged,
            upload.id,
            upload.numbers(),
            content_type=upload.content_type,
            name=upload.name,
            metadata=upload.file_metadata(),
            precondition=None if upload.upsert else _create_only,
            md5=True,
        )

    def progress(self, upload: TusUpload) -> None:
        self.set_header("Upload-Offset", str(upload.offset))
        self.set_header("Upload-Expires", protocol.http_date(upload.expires(self.config.staged_expiry)))

    async def chunk_and_maybe_complete(self, upload: TusUpload) -> TusUpload:
        if self.part is not None:
            upload = await self.finish_chunk()
        if upload.length is not None and upload.offset == upload.length:
            await self.complete(upload)
        return upload


@stream_request_body
class CreationHandler(UploadBase):
    """POST: create an upload (creation, creation-defer-length), with its first chunk when the
    body is `application/offset+octet-stream` (creation-with-upload)."""

    async def prepare(self) -> None:
        if self.request.method not in self.allowed_methods():
            return  # OPTIONS, or a method answered 405
        await self.guarded(self._create)

    async def _create(self) -> None:
        headers = self.request.headers
        protocol.check_version(headers)
        signed = self.admit_key()
        length = protocol.number(headers, "Upload-Length")
        deferred = headers.get("Upload-Defer-Length")
        if (length is None) == (deferred is None) or (deferred is not None and deferred != "1"):
            raise protocol.bad_header("send Upload-Length, or Upload-Defer-Length: 1 (not both)")
        if length is not None and length > self.max_size:
            raise ApiError("payload_too_large", f"uploads are limited to {self.max_size} bytes")
        meta = protocol.metadata(headers.get("Upload-Metadata"))
        bucket, key = meta.get(state.BUCKET), meta.get(state.OBJECT)
        if not bucket or not key:
            raise protocol.bad_header("Upload-Metadata needs bucketName and objectName")
        self.admit_for(bucket, key, signed)
        with client_errors():
            validate_key(key)
            name = check_filename(meta.get(state.FILENAME)) or key.rsplit("/", 1)[-1]
            declared = check_content_type(meta.get(state.CONTENT_TYPE) or meta.get("filetype"))
            content_type = resolve_content_type(declared, name)
        record = await self.call(self.store.get_bucket, bucket, counted=False)
        with client_errors():
            Limits.of(record).check(length, content_type)
        upsert = (
            self.grant.upsert if self.grant is not None else headers.get("x-upsert", "").lower() == "true"
        )
        upload = TusUpload(
            id="",
            bucket=bucket,
            key=key,
            length=length,
            name=name,
            content_type=content_type,
            upsert=upsert,
            signed=self.grant is not None,
            metadata=meta,
        )
        creator = self.key.id if self.key is not None else self.grant.key.id if self.grant is not None else ""
        staged = await self.call(self.store.begin_staged, bucket, key, info=upload.info(creator))
        self.upload = TusUpload.of(staged)
        location = f"{PREFIX}/{staged.id}"
        if self.grant is not None:
            location += "?" + self.signed_query()
        self.set_header("Location", location)
        if headers.get("Content-Type", "").split(";")[0].strip() == protocol.OFFSET_TYPE:
            self.checksum = protocol.Checksum.parse(headers.get("Upload-Checksum"))
            room = length if length is not None else self.max_size
            await self.open_part(self.upload, 0, room)

    async def post(self) -> None:
        if self.early_error is not None:
            raise self.early_error
        assert self.upload is not None
        upload = await self.chunk_and_maybe_complete(self.upload)
        self.progress(upload)
        self.set_status(201)
        self.finish()


@stream_request_body
class UploadHandler(UploadBase):
    """One upload: HEAD (where it stands), PATCH (a chunk at its offset), DELETE (termination)."""

    async def prepare(self) -> None:
        if self.request.method not in self.allowed_methods():
            return  # OPTIONS, or a method answered 405
        await self.guarded(self._load)

    async def _load(self) -> None:
        headers = self.request.headers
        protocol.check_version(headers)
        signed = self.admit_key()
        upload = TusUpload.of(await self.call(self.store.get_staged, self.path_args[0]))
        if upload.expires(self.config.staged_expiry) < dt.datetime.now(dt.UTC):
            raise ApiError("upload_not_found", "the upload expired")
        self.admit_for(upload.bucket, upload.key, signed)
        self.upload = upload
        if self.request.method != "PATCH":
            return
        if headers.get("Content-Type", "").split(";")[0].strip() != protocol.OFFSET_TYPE:
            raise ApiError("unsupported_media_type", f"a PATCH's Content-Type is {protocol.OFFSET_TYPE}")
        offset = protocol.number(headers, "Upload-Offset")
        if offset is None:
            raise protocol.bad_header("a PATCH needs Upload-Offset")
        self.checksum = protocol.Checksum.parse(headers.get("Upload-Checksum"))
        length = protocol.number(headers, "Upload-Length")
        if upload.length is None and length is not None:
            # creation-defer-length: the length comes with a PATCH (tus clients send it with the
            # last chunk); it is kept for this request.
            if length > self.max_size or length < upload.offset:
                raise ApiError("payload_too_large", f"Upload-Length must be {upload.offset}-{self.max_size}")
            upload = self.upload = dataclasses.replace(upload, length=length)
        elif length is not None and length != upload.length:
            raise protocol.bad_header("Upload-Length cannot change")
        if offset != upload.offset:
            raise mismatch(upload.offset)
        end = upload.length if upload.length is not None else self.max_size
        if offset < end:
            await self.open_part(upload, offset, end - offset)

    async def head(self, _id: str) -> None:
        upload = self.upload
        assert upload is not None
        self.set_header("Cache-Control", "no-store")
        self.progress(upload)
        if upload.length is None:
            self.set_header("Upload-Defer-Length", "1")
        else:
            self.set_header("Upload-Length", str(upload.length))
        if upload.metadata:
            self.set_header("Upload-Metadata", encode_metadata(upload.metadata))
        self.set_status(200)
        self.finish()

    async def patch(self, _id: str) -> None:
        if self.early_error is not None:
            raise self.early_error
        upload = self.upload
        assert upload is not None
        upload = await self.chunk_and_maybe_complete(upload)
        self.progress(upload)
        self.set_status(204)
        self.finish()

    async def delete(self, _id: str) -> None:
        assert self.upload is not None
        await self.call(self.store.abort_staged, self.upload.id)
        self.set_status(204)
        self.finish()


def encode_metadata(metadata: dict[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in metadata.items())
