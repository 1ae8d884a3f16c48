"""Pydantic models of the API's request and response bodies, also the store's records."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

DESCRIPTION_MAX = 1024


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BucketCreate(_Request):
    name: str = Field(description="S3-style name: 3-63 of a-z, 0-9 and '-', alphanumeric at both ends.")
    public: bool = False
    description: str | None = Field(None, max_length=DESCRIPTION_MAX)


class BucketUpdate(_Request):
    """Only the fields present in the body change; `description: null` clears it."""

    public: bool = False
    description: str | None = Field(None, max_length=DESCRIPTION_MAX)


class Bucket(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    public: bool = False
    description: str | None = None
    created_at: datetime
    updated_at: datetime


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
