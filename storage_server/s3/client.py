"""The botocore client of the S3 store, the engines' quirks it works around, and the mapping of a
file's record to and from an object's metadata."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, unquote

import botocore.session
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from ..settings import Settings
from ..store.errors import PreconditionFailed, Unavailable
from ..store.records import FileRecord
from . import THREADS

MAX_COPY = 5 * 1024**3  # the largest object one CopyObject may copy
PART_THREADS = 16  # threads per worker sending upload parts (staging.PARTS), shared by its uploads
POOL = THREADS + PART_THREADS  # HTTP connections per worker: one per thread that may talk to the engine
USER = "u-"  # x-amz-meta- names of user metadata start with this (the rest are the record's)


def make_client(config: Settings) -> Any:
    """A botocore S3 client for the settings. Thread-safe once made."""
    secret = config.s3_secret_key.get_secret_value() if config.s3_secret_key is not None else None
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=config.s3_endpoint,
        region_name=config.s3_region,
        aws_access_key_id=config.s3_access_key,
        aws_secret_access_key=secret,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path" if config.s3_path_style else "virtual"},
            # Recent botocore adds CRC checksums to every upload by default; several engines reject
            # or mishandle them. Our own sha256 rides in the metadata instead.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "max_attempts": 4},
            max_pool_connections=POOL,
            connect_timeout=5,
            read_timeout=60,
            tcp_keepalive=True,
        ),
    )
    client.meta.events.register("before-call.s3.DeleteObjects", _content_md5)
    return client


def _content_md5(params: dict[str, Any], **_kwargs: Any) -> None:
    """DeleteObjects must carry Content-MD5 on several engines (Ceph RGW, older MinIO); botocore
    now sends a CRC instead."""
    body = params.get("body") or b""
    if isinstance(body, bytes):
        params["headers"]["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()


def status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_missing(exc: ClientError) -> bool:
    return status(exc) == 404 or code(exc) in ("NoSuchKey", "NotFound", "404")


def is_precondition(exc: ClientError) -> bool:
    return status(exc) == 412 or code(exc) == "PreconditionFailed"


class Missing(Unavailable):
    """The engine has no such key (404). Callers turn it into their own not-found; left alone,
    it is an Unavailable like any other failure of the engine."""


@contextlib.contextmanager
def engine_errors() -> Iterator[None]:
    """Turn what the engine says into StorageErrors: 404 → Missing, 412 → PreconditionFailed,
    anything else it (or the network) fails with → Unavailable."""
    try:
        yield
    except ClientError as exc:
        if is_precondition(exc):
            raise PreconditionFailed("the file changed meanwhile (If-Match / If-None-Match)") from exc
        if is_missing(exc):
            raise Missing(f"the object store has no such key ({code(exc)})") from exc
        raise Unavailable(f"the object store answered {status(exc)} {code(exc)}") from exc
    except BotoCoreError as exc:
        raise Unavailable(f"the object store is unreachable ({type(exc).__name__})") from exc


def put_object(client: Any, condition: dict[str, str], **put: Any) -> Any:
    """PutObject, with `condition` (IfMatch or IfNoneMatch) when given. Ceph RGW 16 compares
    If-Match with the object's ETag stripped of its quotes, so it refuses a correct, quoted one:
    a refusal is retried once unquoted if the object's ETag is indeed still the one sent."""
    try:
        return client.put_object(**condition, **put)
    except ClientError as exc:
        etag = condition.get("IfMatch", "")
        if not (is_precondition(exc) and etag.startswith('"')):
            raise
        try:
            now = client.head_object(Bucket=put["Bucket"], Key=put["Key"])["ETag"]
        except ClientError:
            raise exc from None
        if now != etag:
            raise
        if hasattr(put["Body"], "seek"):
            put["Body"].seek(0)
        return client.put_object(IfMatch=etag.strip('"'), **put)


def copy_object(
    client: Any,
    bucket: str,
    source: str,
    etag: str,
    record: FileRecord,
    target: str,
    condition: dict[str, str],
) -> None:
    """Copy `source` (at version `etag`) to `target` with `record` as its metadata, inside the
    engine of `client` (in parts past MAX_COPY); a copy in parts completes under `condition`."""
    extra = {
        "ContentType": record.content_type,
        "Metadata": file_meta(record),
    }
    with engine_errors():
        if record.size <= MAX_COPY:
            client.copy_object(
                Bucket=bucket,
                Key=target,
                CopySource={"Bucket": bucket, "Key": source},
                CopySourceIfMatch=etag,
                MetadataDirective="REPLACE",
                **extra,
            )
            return
        started = client.create_multipart_upload(Bucket=bucket, Key=target, **extra)
        upload_id, done = started["UploadId"], []
        try:
            step = MAX_COPY // 5
            for number, first in enumerate(range(0, record.size, step), start=1):
                last = min(first + step, record.size) - 1
                part = client.upload_part_copy(
                    Bucket=bucket,
                    Key=target,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": bucket, "Key": source},
                    CopySourceIfMatch=etag,
                    CopySourceRange=f"bytes={first}-{last}",
                )
                done.append({"ETag": part["CopyPartResult"]["ETag"], "PartNumber": number})
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=target,
                UploadId=upload_id,
                MultipartUpload={"Parts": done},
                **condition,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                client.abort_multipart_upload(Bucket=bucket, Key=target, UploadId=upload_id)
            raise


def file_meta(record: FileRecord) -> dict[str, str]:
    """The x-amz-meta-* values of a file (header values are ASCII: text is percent-encoded)."""
    meta = {
        "sha256": record.sha256,
        "name": quote(record.name, safe=""),
        "created": record.created_at.isoformat(),
        "updated": record.updated_at.isoformat(),
    }
    if record.md5 is not None:
        meta["md5"] = record.md5
    if record.damaged is not None:
        meta["damaged"] = record.damaged
    for name, value in record.metadata.items():
        meta[USER + name.lower()] = quote(value, safe="")
    return meta


def file_record(bucket: str, key: str, head: dict[str, Any]) -> FileRecord:
    """A file's record from a HEAD or GET answer (of the whole object or a range of it)."""
    meta = head.get("Metadata") or {}
    size = head["ContentLength"]
    if head.get("ContentRange"):
        size = int(str(head["ContentRange"]).rsplit("/", 1)[1])
    modified = head.get("LastModified") or datetime.now(UTC)
    return FileRecord(
        bucket=bucket,
        path=key,
        name=unquote(meta.get("name", "")) or key.rsplit("/", 1)[-1],
        size=size,
        content_type=head.get("ContentType") or "application/octet-stream",
        sha256=meta.get("sha256", ""),
        md5=meta.get("md5"),
        damaged=meta.get("damaged"),
        metadata={k[len(USER) :]: unquote(v) for k, v in meta.items() if k.startswith(USER)},
        created_at=datetime.fromisoformat(meta["created"]) if "created" in meta else modified,
        updated_at=datetime.fromisoformat(meta["updated"]) if "updated" in meta else modified,
    )
