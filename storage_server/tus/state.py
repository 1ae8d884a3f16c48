"""How a tus upload lives in the store: a staged upload whose `info` says it is tus's (its length
or that it is deferred, its metadata, whether it may replace a file, its name and type, who made
it), whose offset is the sum of its stored parts, and whose chunks go into the last part while
that part is small (coalesced) or into a new part after it; or, on a store that appends in
place, all into one part."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..store.errors import NoSuchUpload
from ..store.records import StagedRecord

PROTOCOL = "tus"
PART_TARGET = 8 << 20  # a part this large is left alone: later chunks start the next one
MAX_PARTS = 9_000  # below the store's 10,000, so a deferred length still fits
# Upload-Metadata keys (Supabase's clients send the first four, Uppy and tuspy `filename`).
BUCKET, OBJECT, CONTENT_TYPE, CACHE_CONTROL, FILENAME = (
    "bucketName",
    "objectName",
    "contentType",
    "cacheControl",
    "filename",
)


@dataclass(frozen=True)
class TusUpload:
    """A tus upload as its staged record keeps it."""

    id: str
    bucket: str
    key: str
    length: int | None  # None: deferred
    name: str
    content_type: str
    upsert: bool
    signed: bool  # created through a signed PUT URL: only that URL's signature continues it
    metadata: dict[str, str] = field(default_factory=dict)
    offset: int = 0
    part_sizes: tuple[int, ...] = ()
    changed_at: datetime | None = None

    def info(self, creator: str) -> dict[str, str]:
        """The staged record's `info` for this upload."""
        return {
            "protocol": PROTOCOL,
            "length": "" if self.length is None else str(self.length),
            "name": self.name,
            "content_type": self.content_type,
            "upsert": "1" if self.upsert else "0",
            "signed": "1" if self.signed else "0",
            "metadata": json.dumps(self.metadata, ensure_ascii=False),
            "creator": creator,
        }

    @classmethod
    def of(cls, record: StagedRecord) -> TusUpload:
        """The tus upload a staged record holds; raise NoSuchUpload for one that is not tus's
        (an S3 multipart upload is not continued through tus)."""
        info = record.info
        if info.get("protocol") != PROTOCOL:
            raise NoSuchUpload(record.id)
        changes = [record.created_at, *(p.created_at for p in record.parts)]
        return cls(
            id=record.id,
            bucket=record.bucket,
            key=record.key,
            length=int(info["length"]) if info.get("length") else None,
            name=info.get("name", ""),
            content_type=info.get("content_type", "application/octet-stream"),
            upsert=info.get("upsert") == "1",
            signed=info.get("signed") == "1",
            metadata=json.loads(info.get("metadata") or "{}"),
            offset=record.size,
            part_sizes=tuple(p.size for p in record.parts),
            changed_at=max(changes),
        )

    def expires(self, expiry: float) -> datetime:
        assert self.changed_at is not None
        return self.changed_at + timedelta(seconds=expiry)

    def part_target(self) -> int:
        """Bytes a part grows to before the next one starts: large enough that the whole upload
        fits in MAX_PARTS parts."""
        return max(PART_TARGET, -(-(self.length or 0) // MAX_PARTS))

    def next_part(self, in_place: bool) -> tuple[int, bool]:
        """The part the next chunk goes into, and whether it appends to that part's bytes: with
        a store that appends `in_place`, always the last part (one part for the whole file)."""
        if not self.part_sizes:
            return 1, False
        last = len(self.part_sizes)
        if in_place or self.part_sizes[-1] < self.part_target():
            return last, True
        return last + 1, False

    def numbers(self) -> list[int]:
        return list(range(1, len(self.part_sizes) + 1))

    def file_metadata(self) -> dict[str, str]:
        """The user metadata the committed file keeps."""
        cache = self.metadata.get(CACHE_CONTROL)
        return {"cache-control": cache} if cache else {}
