"""The S3 store's side of the integrity contract. The object's own metadata is the reference (its
`sha256`), and a damaged version is marked there too: the object is copied onto itself with its
metadata plus `damaged`, only while its ETag is still the one checked, so a racing re-upload is
never marked (and a re-upload, a new object, comes without the mark). An entry under `damaged/`
lists it for the admin route; the scrub holds the lease `scrub.lease` and keeps its position in
`scrub.json`."""

from __future__ import annotations

import contextlib

from pydantic import ValidationError

from ..store.damage import damage_of, entry_name, reconcile
from ..store.errors import BucketNotFound, InvalidKey, InvalidName, PreconditionFailed
from ..store.keys import validate_key
from ..store.records import Damage, FileRecord, ScrubState, now
from . import client as s3client
from .client import Missing, engine_errors
from .objects import LOOKUPS, Objects
from .sweep import Lease

SCRUB_LEASE = 120.0  # seconds: a scrub that dies blocks the next one this long at most


class LeaseScrubLock:
    """The scrub lease, held: renewed by `keep`, given up by `release`."""

    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self._held = True

    def keep(self) -> bool:
        self._held = self._held and self.lease.take()
        return self._held

    def release(self) -> None:
        if self._held:
            self._held = False
            self.lease.release()


class Integrity(Objects):
    """Marks on damaged objects, their index, the scrub's lease and state, under the prefix."""

    def damaged_key(self, bucket: str, key: str) -> str:
        return f"{self.prefix}damaged/{entry_name(bucket, key)}"

    @property
    def scrub_state_key(self) -> str:
        return f"{self.prefix}scrub.json"

    def mark_damaged(self, record: FileRecord, *, found_sha256: str, found_size: int) -> bool:
        """Mark the version `record` describes as damaged and list it; False when the key no
        longer holds that version. Raises InvalidKey.

        The entry is written before the mark, so a failure in between leaves only an entry that
        the listing drops. (An object past 5 GiB is marked by a copy in parts, whose last step
        engines that ignore If-Match on it do not guard.)
        """
        key = "/".join(validate_key(record.path))
        try:
            target = self.files_key(self.bucket_id(record.bucket), key)
        except BucketNotFound:
            return False
        current = self.head(target, record.bucket, key)
        if current.record is None or current.etag is None:
            return False
        if (current.record.sha256, current.record.updated_at) != (record.sha256, record.updated_at):
            return False
        entry = damage_of(current.record, found_sha256, found_size, now())
        if current.record.damaged == found_sha256:
            with contextlib.suppress(PreconditionFailed):
                self._put_entry(entry, {"IfNoneMatch": "*"})  # restored if missing, else kept
            return True
        self._put_entry(entry, {})
        marked = current.record.model_copy(update={"damaged": found_sha256})
        try:
            s3client.copy_object(
                self.client, self.bucket, target, current.etag, marked, target, {"IfMatch": current.etag}
            )
        except (PreconditionFailed, Missing):
            return False  # replaced or deleted since the look: the listing drops the entry
        return True

    def _put_entry(self, entry: Damage, condition: dict[str, str]) -> None:
        with engine_errors():
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.damaged_key(entry.bucket, entry.path),
                Body=entry.model_dump_json().encode(),
                ContentType="application/json",
                **condition,
            )

    def list_damaged(self, bucket: str | None = None) -> list[Damage]:
        """The files marked damaged (of `bucket`, when given), sorted by bucket and path; stale
        entries are removed. Raises InvalidName, BucketNotFound."""
        if bucket is not None:
            self.load(bucket)
        keys = [
            item["Key"] for page in self.pages(f"{self.prefix}damaged/") for item in page.get("Contents", ())
        ]
        found = [d for d in LOOKUPS.map(lambda k: self._reconcile(k, bucket), keys) if d is not None]
        return sorted(found, key=lambda d: (d.bucket, d.path.encode()))

    def _reconcile(self, entry_key: str, bucket: str | None) -> Damage | None:
        """The entry at `entry_key` checked against the object at its key (None when it is of
        another bucket than `bucket`); removed when stale, unless rewritten meanwhile."""
        try:
            with engine_errors():
                answer = self.client.get_object(Bucket=self.bucket, Key=entry_key)
                body = answer["Body"].read()
        except Missing:
            return None
        try:
            entry: Damage | None = Damage.model_validate_json(body)
        except ValidationError:
            entry = None
        if entry is not None and bucket is not None and entry.bucket != bucket:
            return None
        kept = reconcile(entry, self._current(entry)) if entry is not None else None
        if kept is None:
            self.delete_version(entry_key, answer["ETag"])
        elif kept != entry:
            self._put_entry(kept, {})
        return kept

    def _current(self, entry: Damage) -> FileRecord | None:
        try:
            key = "/".join(validate_key(entry.path))
            target = self.files_key(self.bucket_id(entry.bucket), key)
        except (BucketNotFound, InvalidName, InvalidKey):
            return None
        return self.head(target, entry.bucket, key).record

    def lock_scrub(self) -> LeaseScrubLock | None:
        """Take the scrub lease; None when another live scrub holds it."""
        lease = Lease(self, SCRUB_LEASE, name="scrub.lease")
        return LeaseScrubLock(lease) if lease.take() else None

    def load_scrub_state(self) -> ScrubState:
        """The saved scrub state; an empty one when none was saved or it does not parse."""
        try:
            with engine_errors():
                body = self.client.get_object(Bucket=self.bucket, Key=self.scrub_state_key)["Body"].read()
        except Missing:
            return ScrubState()
        try:
            return ScrubState.model_validate_json(body)
        except ValidationError:
            return ScrubState()

    def save_scrub_state(self, state: ScrubState) -> None:
        """Replace the saved scrub state (one PUT: at once)."""
        with engine_errors():
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.scrub_state_key,
                Body=state.model_dump_json().encode(),
                ContentType="application/json",
            )
