"""The records a store hands back: what it knows of a file, a bucket and a page of a listing.
They are the store's, not HTTP's: no header quoting, no cursors."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field


def now() -> datetime:
    """The time every store stamps its records with: timezone-aware UTC."""
    return datetime.now(UTC)


class FileRecord(BaseModel):
    """One stored file."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    path: str = Field(description="The key inside the bucket, segments joined by '/'.")
    name: str = Field(description="Original file name (X-Filename or the multipart filename).")
    size: int
    content_type: str
    sha256: str = Field(description="Hex SHA-256 of the stored bytes.")
    md5: str | None = Field(default=None, description="Hex MD5 of the bytes, when the upload asked for it.")
    metadata: dict[str, str] = Field(default_factory=dict, description="User metadata (S3 x-amz-meta-*).")
    created_at: datetime = Field(description="First upload of this path; kept on overwrite.")
    updated_at: datetime = Field(description="This version.")
    damaged: str | None = Field(
        default=None,
        description="Set when this version's stored bytes were found not to match `sha256`: the "
        "hex SHA-256 they had then. A new upload of the key comes without it.",
    )


class BucketRecord(BaseModel):
    """One bucket, with its file count and total size."""

    model_config = ConfigDict(frozen=True)

    name: str
    public: bool = False
    description: str | None = None
    file_size_limit: int | None = Field(
        default=None, description="Largest file the bucket takes, in bytes; null: no limit of its own."
    )
    allowed_mime_types: list[str] | None = Field(
        default=None,
        description="Content types the bucket takes (`image/png`, `image/*`); null: any.",
    )
    created_at: datetime
    updated_at: datetime
    file_count: int = Field(default=0, description="Files in the bucket, kept up to date on every change.")
    total_size: int = Field(default=0, description="Bytes in all of the bucket's files.")


class BucketChanges(BaseModel):
    """What update_bucket changes: only the fields given (`description=None` clears it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    public: bool = False
    description: str | None = None
    file_size_limit: int | None = None
    allowed_mime_types: list[str] | None = None

    def as_dict(self) -> dict[str, object]:
        """The fields that were given, by name."""
        return self.model_dump(include=self.model_fields_set)


class Damage(BaseModel):
    """A file version whose stored bytes no longer match the sha256 taken at its upload."""

    model_config = ConfigDict(frozen=True)

    bucket: str
    path: str
    expected_sha256: str = Field(description="The sha256 taken at upload: the file's record.")
    found_sha256: str = Field(description="The sha256 of the bytes found stored.")
    found_size: int = Field(description="How many bytes were found stored.")
    detected_at: datetime


class ScrubState(BaseModel):
    """Where a store's scrub stands: the pass in progress, if any (when it started, the last file
    verified, its counts so far), and when the last complete pass started and ended."""

    model_config = ConfigDict(frozen=True)

    started_at: datetime | None = Field(default=None, description="The pass in progress; None: none.")
    bucket: str | None = Field(default=None, description="The bucket of the last file verified.")
    after: str | None = Field(default=None, description="The key of the last file verified.")
    files: int = 0
    bytes: int = 0
    damaged: int = 0
    last_started_at: datetime | None = None
    last_completed_at: datetime | None = None


class Page(BaseModel):
    """One page of a listing: files and (with a delimiter) folders, in UTF-8 byte order."""

    model_config = ConfigDict(frozen=True)

    files: list[FileRecord]
    folders: list[str]
    next_after: str | None = None  # the last key of the page when more follow, else None


class PartRecord(BaseModel):
    """One stored part of a staged upload."""

    model_config = ConfigDict(frozen=True)

    number: int
    size: int
    md5: str = Field(description="Hex MD5 of the part's bytes.")
    sha256: str = Field(description="Hex SHA-256 of the part's bytes.")
    created_at: datetime


class StagedRecord(BaseModel):
    """An upload assembled from parts over many requests, until it is completed or aborted."""

    model_config = ConfigDict(frozen=True)

    id: str
    bucket: str
    key: str
    info: dict[str, str] = Field(default_factory=dict, description="The front door's own state.")
    created_at: datetime
    parts: list[PartRecord] = Field(default_factory=list, description="In number order.")

    @property
    def size(self) -> int:
        return sum(p.size for p in self.parts)
