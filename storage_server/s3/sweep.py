"""The S3 store's sweep of leftovers in the engine, run by one sweeper at a time across every
worker of every node: whoever holds the lease object `sweep.lease` (taken with a conditional PUT,
held until it expires) sweeps; the others skip their turn. Its cost so stays one sweep a minute
however many workers and nodes serve the store. The scrub takes a lease of its own the same way."""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from datetime import datetime, timedelta

from ..store.errors import BucketNotFound, PreconditionFailed
from ..store.records import now
from .client import Missing, engine_errors, put_object
from .objects import Objects

STALE = timedelta(days=1)  # a multipart or staged upload this old is a dead node's leftover
ORPHAN_GRACE = timedelta(hours=1)  # files of a deleted bucket are swept once untouched this long
LEASE_SECONDS = 300.0  # a sweeper that dies blocks the others this long at most


class Lease:
    """This process's claim on a lease of one store (by default the sweep's)."""

    def __init__(self, objects: Objects, seconds: float = LEASE_SECONDS, name: str = "sweep.lease") -> None:
        self.objects = objects
        self.seconds = seconds
        self.name = name
        self.holder = uuid.uuid4().hex

    @property
    def key(self) -> str:
        return f"{self.objects.prefix}{self.name}"

    def take(self) -> bool:
        """Take or renew the lease; False when another live sweeper holds it."""
        objects = self.objects
        try:
            with engine_errors():
                answer = objects.client.get_object(Bucket=objects.bucket, Key=self.key)
                held = json.loads(answer["Body"].read())
            condition = {"IfMatch": answer["ETag"]}
            if held.get("holder") != self.holder and float(held.get("until", 0)) > time.time():
                return False
        except Missing:
            condition = {"IfNoneMatch": "*"}
        except ValueError:
            condition = {}  # not a lease we can read: take it over
        body = json.dumps({"holder": self.holder, "until": time.time() + self.seconds}).encode()
        try:
            with engine_errors():
                put_object(objects.client, condition, Bucket=objects.bucket, Key=self.key, Body=body)
        except PreconditionFailed:
            return False  # another sweeper took it first
        return True

    def release(self) -> None:
        """Give the lease up if this process holds it (another may take it at once)."""
        objects = self.objects
        with contextlib.suppress(Missing, PreconditionFailed, ValueError), engine_errors():
            answer = objects.client.get_object(Bucket=objects.bucket, Key=self.key)
            held = json.loads(answer["Body"].read())
            if held.get("holder") == self.holder:
                objects.client.delete_object(Bucket=objects.bucket, Key=self.key, IfMatch=answer["ETag"])


def sweep_engine(objects: Objects) -> int:
    """Remove multipart uploads and staged objects older than STALE, and the files of deleted
    buckets (a purge cut short) untouched for ORPHAN_GRACE; return how many."""
    removed = 0
    cutoff = now() - STALE
    client, bucket = objects.client, objects.bucket
    with engine_errors():
        for page in client.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, Prefix=objects.prefix
        ):
            for upload in page.get("Uploads", ()):
                if upload["Initiated"] < cutoff:
                    client.abort_multipart_upload(
                        Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    removed += 1
    stale = [
        item["Key"]
        for page in objects.pages(f"{objects.prefix}staging/")
        for item in page.get("Contents", ())
        if item["LastModified"] < cutoff
    ]
    removed += objects.delete_keys(stale)
    # Folders first, records second: a bucket created in between has no folder listed.
    folders = [
        c["Prefix"]
        for page in objects.pages(f"{objects.prefix}files/", "/")
        for c in page.get("CommonPrefixes", ())
    ]
    live = set()
    for name in objects.bucket_names():
        with contextlib.suppress(BucketNotFound):
            live.add(objects.load(name)[0].id)
    for folder in folders:
        if folder.split("/")[-2] not in live and _untouched_since(objects, folder, now() - ORPHAN_GRACE):
            removed += objects.purge(folder)
    return removed


def _untouched_since(objects: Objects, prefix: str, cutoff: datetime) -> bool:
    """No object of the first page under `prefix` changed after `cutoff`: a deleted bucket's
    leftovers, not a bucket whose record this node cannot see yet."""
    page = next(iter(objects.pages(prefix)), {})
    return all(item["LastModified"] < cutoff for item in page.get("Contents", ()))
