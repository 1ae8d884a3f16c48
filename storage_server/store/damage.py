"""The index of damaged files that every backend keeps beside its marks (for the admin listing):
one entry per key, named by a hash of it (a key is too long to name a file or an object), and
checked against the file's current record whenever it is listed."""

from __future__ import annotations

import hashlib
from datetime import datetime

from .records import Damage, FileRecord


def entry_name(bucket: str, key: str) -> str:
    """The name of the key's entry: hex SHA-256 of bucket and key (NUL cannot occur in either)."""
    return hashlib.sha256(f"{bucket}\0{key}".encode()).hexdigest()


def damage_of(record: FileRecord, found_sha256: str, found_size: int, detected_at: datetime) -> Damage:
    """The entry for a version of a file found damaged."""
    return Damage(
        bucket=record.bucket,
        path=record.path,
        expected_sha256=record.sha256,
        found_sha256=found_sha256,
        found_size=found_size,
        detected_at=detected_at,
    )


def reconcile(entry: Damage, current: FileRecord | None) -> Damage | None:
    """The entry as it stands against the file now at its key: None when no file there is marked
    damaged (re-uploaded, deleted, its bucket gone), else the entry, its sha256s taken from the
    mark should they disagree (two detections raced)."""
    if current is None or current.damaged is None:
        return None
    if (entry.expected_sha256, entry.found_sha256) == (current.sha256, current.damaged):
        return entry
    return entry.model_copy(
        update={
            "expected_sha256": current.sha256,
            "found_sha256": current.damaged,
            "found_size": current.size,
        }
    )
