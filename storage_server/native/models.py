"""Pydantic models of the native API's request and response bodies, and their making from the
store's records."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    Strict,
    StringConstraints,
    computed_field,
)

from ..store.keys import BUCKET_PATTERN, KEY_DOC_MAX_LENGTH, KEY_PATTERN
from ..store.records import BucketChanges, BucketRecord, Damage, FileRecord

# Documented in the schema, checked by keys.py (so that a bad name is a 400, not a 422).
BUCKET_NAME: dict[str, JsonValue] = {"pattern": BUCKET_PATTERN}
KEY: dict[str, JsonValue] = {"pattern": KEY_PATTERN, "maxLength": KEY_DOC_MAX_LENGTH}

DESCRIPTION_MAX = 1024


def _whole_float(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


# A JSON integer: 5 or 5.0 (JSON Schema's "integer" takes both), never true, "5" or 5.5.
Whole = Annotated[int, Strict(), BeforeValidator(_whole_float)]
Bytes = Annotated[int, Strict(), Field(ge=0), BeforeValidator(_whole_float)]
_TOKEN = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
MimeType = Annotated[str, StringConstraints(pattern=rf"^{_TOKEN}/(?:\*|{_TOKEN})$")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BucketCreate(_Request):
    name: str = Field(
        description="S3-style name: 3-63 of a-z, 0-9 and '-', alphanumeric at both ends.",
        json_schema_extra=BUCKET_NAME,
    )
    public: bool = False
    description: str | None = Field(None, max_length=DESCRIPTION_MAX)
    file_size_limit: Bytes | None = Field(None, description="Largest file in bytes; null: no limit.")
    allowed_mime_types: list[MimeType] | None = Field(
        None, max_length=100, description="Allowed content types (`image/png`, `image/*`); null: any."
    )


class BucketUpdate(_Request):
    """Only the fields present in the body change; `description: null` clears it (so does null for
    the limits)."""

    public: bool = False
    description: str | None = Field(None, max_length=DESCRIPTION_MAX)
    file_size_limit: Bytes | None = None
    allowed_mime_types: list[MimeType] | None = Field(None, max_length=100)

    def changes(self) -> BucketChanges:
        return BucketChanges(**self.model_dump(include=self.model_fields_set))


class Bucket(BucketRecord):
    @classmethod
    def of(cls, record: BucketRecord) -> Bucket:
        return cls.model_construct(**dict(record))


class File(BaseModel):
    model_config = ConfigDict(frozen=True)

    bucket: str
    path: str = Field(description="The key inside the bucket, segments joined by '/'.")
    name: str = Field(description="Original file name (X-Filename or the multipart filename).")
    size: int
    content_type: str
    sha256: str = Field(description="Hex SHA-256 of the stored bytes.")
    created_at: datetime
    updated_at: datetime

    @computed_field(description="Strong entity tag, as sent in the ETag header.")  # type: ignore[prop-decorator]
    @property
    def etag(self) -> str:
        return f'"{self.sha256}"'

    @classmethod
    def of(cls, r: FileRecord) -> File:
        return cls.model_construct(
            bucket=r.bucket,
            path=r.path,
            name=r.name,
            size=r.size,
            content_type=r.content_type,
            sha256=r.sha256,
            created_at=r.created_at,
            updated_at=r.updated_at,
        )


class Listing(BaseModel):
    """One page of a bucket's files, S3 ListObjectsV2 style."""

    bucket: str
    prefix: str
    delimiter: str | None
    files: list[File] = Field(description="Files whose path starts with the prefix, in byte order.")
    folders: list[str] = Field(description="With a delimiter: the common prefixes, each once.")
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null on the last."
    )


class UploadResult(BaseModel):
    success: Literal[True] = True
    file: File


class Health(BaseModel):
    status: Literal["healthy", "unhealthy"]
    version: str


class Unhealthy(Health):
    status: Literal["healthy", "unhealthy"] = "unhealthy"
    detail: str
    code: str


class ErrorBody(BaseModel):
    detail: str
    code: str


class ListQuery(_Request):
    """Query of a file listing."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)

    prefix: str = Field("", description="Only paths starting with this (not necessarily at a '/').")
    delimiter: Literal["/", ""] = Field("", description="'/' groups deeper paths into `folders`.")
    limit: int = Field(1000, ge=1, le=10000, description="Files plus folders per page.")
    cursor: str | None = Field(
        None, description="`next_cursor` of the previous page.", pattern="^(?:[0-9a-f]{2})+$"
    )


class FileRef(_Request):
    bucket: str = Field(json_schema_extra=BUCKET_NAME)
    path: str = Field(json_schema_extra=KEY)


class TransferRequest(_Request):
    """Copy or move `source` to `destination` (replaced if present, unless If-None-Match: *)."""

    source: FileRef
    destination: FileRef


class BatchDelete(_Request):
    paths: list[str] = Field(min_length=1, max_length=1000, description="Paths to delete, 1 to 1000.")


class DeleteResult(BaseModel):
    """What `DELETE /files/{bucket}/{path}` would have answered for this path."""

    path: str
    status: int = Field(description="204 when deleted or already gone, else the error's status.")
    code: str | None = None
    detail: str | None = None


class BatchDeleteResult(BaseModel):
    results: list[DeleteResult]


class SignRequest(_Request):
    method: Literal["GET", "PUT"] = Field(description="GET: download (and HEAD); PUT: upload (PUT or POST).")
    expires_in: Whole = Field(ge=1, le=604800, description="Seconds the URL stays valid, 1 to 7 days.")
    upsert: bool = Field(False, description="PUT only: may replace an existing file (else create only).")


class SignedUrl(BaseModel):
    url: str = Field(description="The file's path with the signature in its query; add it to the base URL.")
    expires_at: datetime


class DamagedQuery(_Request):
    """Query of the damaged files listing."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)

    bucket: str | None = Field(None, description="Only this bucket's files.", json_schema_extra=BUCKET_NAME)


class DamagedFile(Damage):
    """A file whose stored bytes no longer match the sha256 taken at its upload (downloads of it
    answer 409 `damaged` until it is uploaded again)."""

    @classmethod
    def of(cls, record: Damage) -> DamagedFile:
        return cls.model_construct(**dict(record))


class DamagedList(BaseModel):
    files: list[DamagedFile] = Field(description="Sorted by bucket, then path.")
