"""What only the S3 backend has: its requests to the engine, multipart uploads (their parts sent a
few at a time) and their clean-up, a bucket deleted under an upload, the sweep, and an engine that
is down or refuses us."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from storage_server.backends import open_store
from storage_server.s3 import client as s3client
from storage_server.s3 import staging
from storage_server.s3 import sweep as s3sweep
from storage_server.s3.store import S3Store
from storage_server.settings import Settings
from storage_server.store.errors import BucketNotFound, StorageError, Unavailable
from tests.conftest import Api, body_json
from tests.s3env import wait_until
from tests.seaweed import SeaweedFS, s3_env, s3_settings
from tests.service import MiB, Service, free_port
from tests.stored import contents, stored, temp_files


@pytest.fixture
def s3(store: Any) -> S3Store:
    assert isinstance(store, S3Store)
    store.create_bucket("photos", public=False, description=None)
    return store


@pytest.fixture
def sent(s3: S3Store) -> Iterator[list[tuple[str, dict[str, str]]]]:
    """(operation, headers) of every request the store sends to the engine."""
    requests: list[tuple[str, dict[str, str]]] = []

    def record(request: Any, event_name: str, **_kwargs: Any) -> None:
        requests.append(
            (event_name.rsplit(".", 1)[-1], {k.lower(): str(v) for k, v in request.headers.items()})
        )

    s3.client.meta.events.register("before-send.s3", record)
    yield requests
    s3.client.meta.events.unregister("before-send.s3", record)


async def test_uploads_send_no_crc_checksums_and_bulk_deletes_send_content_md5(
    api: Api, s3: S3Store, sent: list[tuple[str, dict[str, str]]]
) -> None:
    assert (await api.upload("photos", "a.txt", b"hello")).code == 201
    assert (await api.upload("photos", "big.bin", b"x" * (17 * MiB))).code == 201  # two parts
    assert (await api.request("DELETE", "/api/v1/buckets/photos")).code == 204
    puts = [h for op, h in sent if op in ("PutObject", "UploadPart")]
    assert len(puts) == 3
    for headers in puts:
        assert not [name for name in headers if "checksum" in name], headers
        assert headers["x-amz-content-sha256"] != "UNSIGNED-PAYLOAD"  # plain HTTP: the body is signed
    deletes = [h for op, h in sent if op == "DeleteObjects"]
    assert deletes
    assert all("content-md5" in h for h in deletes)


async def test_a_multipart_upload_lands_with_its_metadata_and_leaves_no_parts(api: Api, s3: S3Store) -> None:
    data = bytes(range(256)) * (70 * 1024)  # 17.5 MiB: two parts of the 16 MiB default
    response = await api.upload(
        "photos",
        "deep/big.bin",
        data,
        headers={"Content-Type": "application/x-big", "X-Filename": "B%C3%AFg"},
    )
    assert response.code == 201, response.body
    record = body_json(response)["file"]
    assert (record["name"], record["content_type"], record["size"]) == ("Bïg", "application/x-big", len(data))
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    head = await api.request("HEAD", "/api/v1/files/photos/deep/big.bin")
    assert head.headers["ETag"] == record["etag"]
    tail = await api.request("GET", "/api/v1/files/photos/deep/big.bin", headers={"Range": "bytes=-5"})
    assert (tail.code, tail.body) == (206, data[-5:])
    assert temp_files(s3) == []
    assert contents(s3, "photos") == ["deep/big.bin"]


async def test_a_client_gone_mid_multipart_upload_leaves_no_orphan_parts(api: Api, s3: S3Store) -> None:
    port = urllib.parse.urlsplit(api.url("/")).port
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"PUT /api/v1/files/photos/cut.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n")
    for _ in range(20):  # 20 MiB: one part sent, the next one spooling
        writer.write(b"z" * MiB)
        await writer.drain()
    for _ in range(100):
        if any("/staging/" in name for name in temp_files(s3)):
            break
        await asyncio.sleep(0.05)
    assert any("/staging/" in name for name in temp_files(s3))  # a multipart upload is under way
    writer.close()
    for _ in range(100):
        if temp_files(s3) == []:
            break
        await asyncio.sleep(0.05)
    assert temp_files(s3) == []
    assert (await api.request("GET", "/api/v1/files/photos/cut.bin")).code == 404


def test_an_upload_into_a_bucket_deleted_meanwhile_is_404_and_leaves_nothing(s3: S3Store) -> None:
    upload = s3.begin_upload("photos", "late.txt")
    upload.write(b"too late")
    s3.delete_bucket("photos")
    s3.create_bucket("photos", public=False, description=None)  # same name, another bucket
    with pytest.raises(BucketNotFound):
        upload.commit(content_type="text/plain", name="late.txt")
    assert contents(s3, "photos") == []
    assert s3.sweep() == 0  # nothing of the old bucket was left for the sweep


def test_sweep_removes_the_files_of_a_deleted_bucket_once_untouched_for_a_while(
    s3: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    orphan = f"{s3.prefix}files/0123456789abcdef/left-behind.txt"  # a purge cut short by a crash
    s3.client.put_object(Bucket=s3.bucket, Key=orphan, Body=b"x")
    kept = s3.begin_upload("photos", "kept.txt")
    kept.write(b"kept")
    kept.commit(content_type="text/plain", name="kept.txt")
    assert s3.sweep() == 0  # too fresh: maybe a bucket whose record this node cannot see yet
    monkeypatch.setattr(s3sweep, "ORPHAN_GRACE", timedelta(0))
    assert s3.sweep() == 1
    assert s3.client.list_objects_v2(Bucket=s3.bucket, Prefix=orphan).get("KeyCount") == 0
    assert contents(s3, "photos") == ["kept.txt"]


def test_a_store_that_cannot_reach_the_engine_is_unavailable(tmp_path: Path) -> None:
    config = Settings(path=tmp_path, **s3_settings(f"http://127.0.0.1:{free_port()}"))
    store = open_store(config)
    with pytest.raises(Unavailable):
        store.prepare()
    assert store.is_writable() is False


def test_wrong_credentials_fail_at_start_with_a_clear_message(
    seaweedfs: SeaweedFS, start: type[Service]
) -> None:
    env = s3_env(seaweedfs.endpoints[0])
    service = start(env={**env, "STORAGE_S3_SECRET_KEY": "not-the-secret"})
    assert service.proc.wait(30) != 0
    assert "cannot start" in service.output()
    assert "not-the-secret" not in service.output()


async def test_health_is_503_when_the_engine_is_gone(api: Api, s3: S3Store) -> None:
    assert (await api.request("GET", "/health")).code == 200
    s3.client.meta.events.register("before-send.s3", _refuse)
    try:
        response = await api.request("GET", "/health")
        assert (response.code, body_json(response)["status"]) == (503, "unhealthy")
        listing = await api.request("GET", "/api/v1/buckets")
        assert (listing.code, body_json(listing)["code"]) == (503, "storage_unavailable")
    finally:
        s3.client.meta.events.unregister("before-send.s3", _refuse)


def _refuse(request: Any, **_kwargs: Any) -> None:
    raise EndpointConnectionError(endpoint_url=request.url)  # what botocore raises when it is down


async def test_files_over_the_single_copy_limit_are_copied_in_parts(
    api: Api, s3: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3client, "MAX_COPY", 25 * MiB)  # 5 GiB in production; 5 MiB copy parts here
    data = bytes(range(256)) * (120 * 1024)  # 30 MiB
    upload = await api.upload("photos", "huge.bin", data)  # staged, then copied in parts
    assert upload.code == 201, upload.body
    body = {
        "source": {"bucket": "photos", "path": "huge.bin"},
        "destination": {"bucket": "photos", "path": "b"},
    }
    copied = await api.request("POST", "/api/v1/copy", body)
    assert copied.code == 200, copied.body
    for key in ("huge.bin", "b"):
        download = await api.request("GET", f"/api/v1/files/photos/{key}")
        assert hashlib.sha256(download.body).hexdigest() == body_json(upload)["file"]["sha256"]
    assert temp_files(s3) == []


def _once(action: Any) -> Any:
    """A botocore event handler that runs `action` the first time it fires, and never again."""
    fired: list[bool] = []

    def handler(**_kwargs: Any) -> None:
        if not fired:
            fired.append(True)
            action()

    return handler


def _put(s3: S3Store, key: str, data: bytes) -> None:
    upload = s3.begin_upload("photos", key)
    upload.write(data)
    upload.commit(content_type="application/octet-stream", name=key)


async def test_a_file_replaced_between_its_look_and_its_ranged_read_is_served_whole_not_500(
    api: Api, s3: S3Store
) -> None:
    _put(s3, "v.bin", b"old version!")
    # The replacement lands after the HEAD that sent the headers, before the ranged GET.
    replace = _once(lambda: _put(s3, "v.bin", b"NEW VERSION, LONGER"))
    s3.client.meta.events.register("before-call.s3.GetObject", replace)
    try:
        response = await api.request("GET", "/api/v1/files/photos/v.bin", headers={"Range": "bytes=0-2"})
    finally:
        s3.client.meta.events.unregister("before-call.s3.GetObject", replace)
    assert (response.code, response.body) == (206, b"NEW")
    assert response.headers["Content-Range"] == "bytes 0-2/19"


async def test_move_keeps_a_source_overwritten_between_the_copy_and_the_delete(api: Api, s3: S3Store) -> None:
    _put(s3, "src.txt", b"the version moved")
    overwrite = _once(lambda: _put(s3, "src.txt", b"written meanwhile"))
    s3.client.meta.events.register("after-call.s3.CopyObject", overwrite)
    try:
        body = {
            "source": {"bucket": "photos", "path": "src.txt"},
            "destination": {"bucket": "photos", "path": "dst.txt"},
        }
        moved = await api.request("POST", "/api/v1/move", body)
    finally:
        s3.client.meta.events.unregister("after-call.s3.CopyObject", overwrite)
    assert moved.code == 200, moved.body
    assert (await api.request("GET", "/api/v1/files/photos/dst.txt")).body == b"the version moved"
    assert (await api.request("GET", "/api/v1/files/photos/src.txt")).body == b"written meanwhile"


def test_one_sweeper_at_a_time_across_stores_on_the_same_prefix(
    s3: S3Store, config: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = open_store(config)  # another worker or node: same engine bucket, same prefix
    assert isinstance(other, S3Store)
    listed: list[str] = []
    other.client.meta.events.register("before-call.s3.ListMultipartUploads", lambda **_: listed.append("x"))
    s3.sweep()  # takes the lease
    other.sweep()
    assert listed == []  # the other one skipped the engine's sweep
    assert other.lease.take() is False
    assert s3.lease.take() is True  # the holder renews
    monkeypatch.setattr(s3sweep.time, "time", lambda: 1e12)  # long after the lease expired
    other.sweep()
    assert listed == ["x"]


def test_the_scrub_lease_has_one_holder_and_a_holder_taken_over_loses_it(
    s3: S3Store, config: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = open_store(config)  # another worker or node
    lock = s3.lock_scrub()
    assert lock is not None
    assert other.lock_scrub() is None
    monkeypatch.setattr(s3sweep.time, "time", lambda: 1e12)  # long after the lease expired
    taken = other.lock_scrub()
    assert taken is not None
    monkeypatch.undo()
    assert lock.keep() is False
    lock.release()  # gives up nothing it does not hold
    assert s3.lock_scrub() is None
    taken.release()
    again = s3.lock_scrub()
    assert again is not None
    again.release()


class PartsWatch:
    """UploadPart calls under way (botocore's before-call and after-call events): how many at
    most, how many in all, and the most part files the spool held as one began. Each call first
    sleeps `delay`, or waits for `hold` when given (a slow engine)."""

    def __init__(self, s3: S3Store, delay: float = 0.0, hold: threading.Event | None = None) -> None:
        self.s3, self.delay, self.hold = s3, delay, hold
        self.lock = threading.Lock()
        self.now = self.peak = self.calls = self.files_peak = 0

    def before(self, **_kwargs: Any) -> None:
        with self.lock:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)
            self.files_peak = max(self.files_peak, len(os.listdir(self.s3.spool.folder)))
        if self.hold is not None:
            self.hold.wait(10)
        else:
            time.sleep(self.delay)

    def after(self, **_kwargs: Any) -> None:
        with self.lock:
            self.now -= 1

    def __enter__(self) -> PartsWatch:
        self.s3.client.meta.events.register("before-call.s3.UploadPart", self.before)
        self.s3.client.meta.events.register("after-call.s3.UploadPart", self.after)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.hold is not None:
            self.hold.set()
        self.s3.client.meta.events.unregister("before-call.s3.UploadPart", self.before)
        self.s3.client.meta.events.unregister("after-call.s3.UploadPart", self.after)


PART = 5 * MiB  # the smallest part S3 allows (but the last)


@pytest.fixture
def small_parts(s3: S3Store, monkeypatch: pytest.MonkeyPatch) -> S3Store:
    monkeypatch.setattr(s3.spool, "part_size", PART)
    return s3


def test_parts_go_out_a_few_at_a_time_and_the_file_arrives_whole(small_parts: S3Store) -> None:
    s3, most = small_parts, staging.PARTS_IN_FLIGHT
    data = os.urandom(9 * PART + 12345)  # ten parts, each of its own bytes
    with PartsWatch(s3, delay=0.3) as watch:
        upload = s3.begin_upload("photos", "big.bin")
        for start in range(0, len(data), MiB):
            upload.write(data[start : start + MiB])
        record = upload.commit(content_type="application/octet-stream", name="big.bin")
    assert (watch.calls, watch.peak) == (10, most)  # in parallel, and never more than allowed
    assert watch.files_peak <= most + 1  # the parts under way and the one being filled
    assert (record.size, record.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert stored(s3, "photos", "big.bin") == data
    assert temp_files(s3) == []


def test_a_write_waits_while_the_parts_in_flight_are_full(small_parts: S3Store) -> None:
    s3, most = small_parts, staging.PARTS_IN_FLIGHT
    accepted: list[int] = []
    upload = s3.begin_upload("photos", "held.bin")

    def client() -> None:
        for n in range(most + 2):
            upload.write(bytes([n]) * PART)
            accepted.append(n)

    with PartsWatch(s3, hold=threading.Event()) as watch:
        writer = threading.Thread(target=client)
        writer.start()
        wait_until(lambda: watch.now == most)
        time.sleep(0.5)
        assert writer.is_alive()  # the write of the next full part waits for a free slot
        assert len(accepted) == most
        assert watch.hold is not None
        watch.hold.set()
        writer.join(30)
    assert len(accepted) == most + 2
    record = upload.commit(content_type="application/octet-stream", name="held.bin")
    data = b"".join(bytes([n]) * PART for n in range(most + 2))
    assert record.sha256 == hashlib.sha256(data).hexdigest()
    assert stored(s3, "photos", "held.bin") == data
    assert temp_files(s3) == []


@pytest.mark.parametrize("failing", [2, 6])  # one while the body streams in, the last at the commit
def test_a_part_that_fails_fails_the_upload_and_leaves_no_multipart_upload(
    small_parts: S3Store, failing: int
) -> None:
    s3, calls = small_parts, []

    def refuse(**_kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == failing:
            raise EndpointConnectionError(endpoint_url=s3.client.meta.endpoint_url)

    upload = s3.begin_upload("photos", "failed.bin")

    def send() -> None:  # the error comes at a later write, or at the commit
        for _ in range(11):  # five parts and a half
            upload.write(os.urandom(PART // 2))
        upload.commit(content_type="application/octet-stream", name="failed.bin")

    s3.client.meta.events.register("before-call.s3.UploadPart", refuse)
    try:
        with pytest.raises(StorageError):
            send()
    finally:
        s3.client.meta.events.unregister("before-call.s3.UploadPart", refuse)
    assert s3.client.list_multipart_uploads(Bucket=s3.bucket, Prefix=s3.prefix).get("Uploads", []) == []
    assert temp_files(s3) == []
    assert contents(s3, "photos") == []
    with pytest.raises(StorageError):
        upload.write(b"more")


def test_abort_with_parts_in_flight_waits_for_them_and_leaves_nothing(
    small_parts: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, most = small_parts, staging.PARTS_IN_FLIGHT
    pool = ThreadPoolExecutor(2)  # two parts under way, the others queued behind them
    monkeypatch.setattr(staging, "PARTS", pool)
    upload = s3.begin_upload("photos", "aborted.bin")
    with PartsWatch(s3, hold=threading.Event()) as watch:
        for n in range(most):
            upload.write(bytes([n]) * PART)
        wait_until(lambda: watch.now == 2)
        assert len(os.listdir(s3.spool.folder)) == most + 1
        aborting = threading.Thread(target=upload.abort)
        aborting.start()
        time.sleep(0.5)
        assert aborting.is_alive()  # waits for the parts under way: none may land after the abort
        assert watch.hold is not None
        watch.hold.set()
        aborting.join(30)
        assert not aborting.is_alive()
    pool.shutdown()
    assert watch.calls == 2  # the queued parts were never sent
    assert temp_files(s3) == []
    with pytest.raises(StorageError):
        upload.write(b"more")
