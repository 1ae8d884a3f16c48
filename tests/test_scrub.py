"""Bitrot: stored bytes changed behind the service's back (a byte flipped in the file on disk, an
object overwritten in the engine) are found by the scrub (`python run.py scrub`, the background
passes) and by verified reads, marked, refused to downloads and listed, until a re-upload."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import signal
import sys
import time
from typing import Any

import pytest
from pydantic import SecretStr

from storage_server import blobfs
from storage_server.s3.store import S3Store
from storage_server.scrub import MB, Busy, Scrubber
from storage_server.settings import Settings
from storage_server.store import Store
from tests.conftest import Api, body_json
from tests.service import ROOT, Service

KiB = 1024
FILES = {"a.txt": b"alpha " * 100, "b/c.bin": os.urandom(300 * KiB), "d.bin": os.urandom(20 * KiB)}


def flip_a_byte(store: Store, bucket: str, key: str, offset: int = 1000) -> str:
    """Change one byte of the stored file behind the service's back; return the new sha256."""
    if isinstance(store, blobfs.BlobStore):
        path = store.root / bucket / key
        fd = os.open(path, os.O_RDWR)
        try:
            os.pwrite(fd, bytes([os.pread(fd, 1, offset)[0] ^ 0x01]), offset)  # in place: the same inode
        finally:
            os.close(fd)
        return hashlib.sha256(path.read_bytes()).hexdigest()
    assert isinstance(store, S3Store)
    target = store.files_key(store.bucket_id(bucket), key)
    head = store.client.head_object(Bucket=store.bucket, Key=target)
    data = bytearray(store.client.get_object(Bucket=store.bucket, Key=target)["Body"].read())
    data[offset] ^= 0x01
    store.client.put_object(  # the same metadata (its sha256 among it): only the bytes differ
        Bucket=store.bucket,
        Key=target,
        Body=bytes(data),
        Metadata=head["Metadata"],
        ContentType=head["ContentType"],
    )
    return hashlib.sha256(data).hexdigest()


def env_of(config: Settings) -> dict[str, str]:
    """The test's settings as the STORAGE_* variables of a run.py started beside it."""
    env = {}
    for name, value in config.model_dump().items():
        if value is not None:
            value = value.get_secret_value() if isinstance(value, SecretStr) else value
            env[f"STORAGE_{name.upper()}"] = str(value)
    return env


async def scrub_cli(config: Settings, *flags: str) -> tuple[int, str, str]:
    """`python run.py scrub` on the test's store: (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "run.py", "scrub", *flags,
        cwd=ROOT,
        env={**os.environ, **env_of(config)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=40)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def upload_all(api: Api) -> dict[str, dict[str, Any]]:
    await api.create_bucket("photos")
    files = {}
    for key, data in FILES.items():
        response = await api.upload("photos", key, data)
        assert response.code == 201, response.body
        files[key] = body_json(response)["file"]
    return files


def damaged_paths(listing: Any) -> list[str]:
    return [f"{f['bucket']}/{f['path']}" for f in listing["files"]]


async def test_the_scrub_reports_exactly_the_damaged_file_which_downloads_then_refuse(
    api: Api, store: Store, config: Settings
) -> None:
    files = await upload_all(api)
    found = flip_a_byte(store, "photos", "b/c.bin")

    status, out, err = await scrub_cli(config)
    assert status == 1, err
    expected = files["b/c.bin"]["sha256"]
    assert out.splitlines() == [f"DAMAGED photos/b/c.bin expected={expected} found={found}"]
    assert "pass complete" in err
    assert "3 files" in err.splitlines()[-1]
    assert re.search(r"scrub: 3 files, [\d.]+ of [\d.]+ MB, [\d.]+ MB/s, ETA [\d:]+, 1 damaged", err), err

    for method in ("GET", "HEAD"):
        refused = await api.request(method, "/api/v1/files/photos/b/c.bin")
        assert refused.code == 409
    refused = await api.request("GET", "/api/v1/files/photos/b/c.bin")
    assert body_json(refused)["code"] == "damaged"
    for key in ("a.txt", "d.bin"):
        assert (await api.request("GET", f"/api/v1/files/photos/{key}")).body == FILES[key]
    listing = body_json(await api.request("GET", "/api/v1/damaged"))
    [entry] = listing["files"]
    assert (entry["bucket"], entry["path"], entry["found_size"]) == (
        "photos",
        "b/c.bin",
        len(FILES["b/c.bin"]),
    )
    assert (entry["expected_sha256"], entry["found_sha256"]) == (expected, found)
    assert body_json(await api.request("GET", "/api/v1/damaged?bucket=photos")) == listing
    await api.create_bucket("archive")
    assert body_json(await api.request("GET", "/api/v1/damaged?bucket=archive")) == {"files": []}
    missing = await api.request("GET", "/api/v1/damaged?bucket=missing")
    assert (missing.code, body_json(missing)["code"]) == (404, "bucket_not_found")

    assert (await api.upload("photos", "b/c.bin", FILES["b/c.bin"])).code == 201  # the repair
    assert (await api.request("GET", "/api/v1/files/photos/b/c.bin")).body == FILES["b/c.bin"]
    assert body_json(await api.request("GET", "/api/v1/damaged")) == {"files": []}
    status, out, err = await scrub_cli(config)
    assert (status, out) == (0, ""), err


async def read_raw(api: Api, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """GET over a plain socket, read until the server closes it: (status, headers, body as received)."""
    port = int(api.url("/").rsplit(":", 1)[1].split("/")[0])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), timeout=20)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    fields = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body


async def test_a_verified_read_of_a_damaged_file_never_delivers_a_complete_body(
    api: Api, store: Store
) -> None:
    await upload_all(api)
    size = len(FILES["b/c.bin"])
    status, headers, body = await read_raw(api, "/api/v1/files/photos/b/c.bin", {"X-Verify": "sha256"})
    assert (status, int(headers["content-length"]), body) == (200, size, FILES["b/c.bin"])  # intact: whole

    flip_a_byte(store, "photos", "b/c.bin", offset=size // 2)
    flipped = bytearray(FILES["b/c.bin"])
    flipped[size // 2] ^= 0x01
    status, headers, body = await read_raw(api, "/api/v1/files/photos/b/c.bin", {"X-Verify": "sha256"})
    assert (status, int(headers["content-length"])) == (200, size)
    assert len(body) < size  # cut before the end
    assert body == flipped[: len(body)]

    refused = await api.request("GET", "/api/v1/files/photos/b/c.bin")
    assert (refused.code, body_json(refused)["code"]) == (409, "damaged")
    assert damaged_paths(body_json(await api.request("GET", "/api/v1/damaged"))) == ["photos/b/c.bin"]
    metrics = (await api.request("GET", "/metrics")).body.decode()
    assert metric(metrics, "storage_scrub_damaged_files_total", '{found_by="read"}') >= 1


async def test_a_verified_read_of_a_small_damaged_file_is_refused_before_any_byte(
    api: Api, store: Store
) -> None:
    await upload_all(api)
    flip_a_byte(store, "photos", "d.bin")  # smaller than a chunk: read whole with the open
    verified = await api.request("GET", "/api/v1/files/photos/d.bin", headers={"X-Verify": "sha256"})
    assert (verified.code, body_json(verified)["code"]) == (409, "damaged")
    assert damaged_paths(body_json(await api.request("GET", "/api/v1/damaged"))) == ["photos/d.bin"]


async def test_x_verify_takes_only_sha256_and_is_ignored_with_a_range(api: Api, store: Store) -> None:
    await upload_all(api)
    bad = await api.request("GET", "/api/v1/files/photos/a.txt", headers={"X-Verify": "md5"})
    assert (bad.code, body_json(bad)["code"]) == (400, "bad_request")
    flip_a_byte(store, "photos", "a.txt", offset=500)
    ranged = await api.request(
        "GET", "/api/v1/files/photos/a.txt", headers={"X-Verify": "sha256", "Range": "bytes=0-9"}
    )
    assert (ranged.code, ranged.body) == (206, FILES["a.txt"][:10])
    assert body_json(await api.request("GET", "/api/v1/damaged")) == {"files": []}


def test_an_interrupted_scrub_resumes_without_reading_again_what_it_verified(
    store: Store,
) -> None:
    store.create_bucket("archive")
    store.create_bucket("photos")
    keys = [("archive", f"{n}.bin") for n in range(3)] + [("photos", f"x/{n}.bin") for n in range(4)]
    for bucket, key in keys:
        upload = store.begin_upload(bucket, key)
        upload.write(os.urandom(10 * KiB))
        upload.commit(content_type="application/octet-stream", name=key)
    read: list[list[tuple[str, str]]] = [[], []]

    def scrubber(run: int, limit: int | None) -> Scrubber:
        return Scrubber(
            store,
            rate=1000 * MB,
            limit=limit,
            on_verified=lambda record, _size: read[run].append((record.bucket, record.path)),
        )

    first = scrubber(0, limit=4).run()
    assert (first.complete, first.files, first.status) == (False, 4, 2)
    assert store.load_scrub_state().files == 4
    second = scrubber(1, limit=None).run()
    assert (second.complete, second.resumed, second.files, second.status) == (True, True, 3, 0)
    assert read[0] + read[1] == keys  # each once, in order
    state = store.load_scrub_state()
    assert (state.started_at, state.files) == (None, 0)
    assert state.last_completed_at is not None


async def test_the_cli_stops_cleanly_on_sigint_and_the_next_run_resumes(api: Api, config: Settings) -> None:
    await upload_all(api)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "run.py", "scrub", "--scrub-rate", "0.05",
        cwd=ROOT,
        env={**os.environ, **env_of(config)},
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    assert b"at most 0.05 MB/s" in await asyncio.wait_for(proc.stderr.readline(), timeout=20)
    await asyncio.sleep(1)
    proc.send_signal(signal.SIGINT)
    err = (await asyncio.wait_for(proc.stderr.read(), timeout=20)).decode()
    assert await proc.wait() == 2
    assert "stopped; the next scrub resumes from here" in err
    status, _out, err = await scrub_cli(config)
    assert status == 0, err
    assert "pass complete (resumed)" in err


def test_the_scrub_rate_holds_within_20_percent(store: Store) -> None:
    store.create_bucket("photos")
    for n in range(4):
        upload = store.begin_upload("photos", f"{n}.bin")
        upload.write(os.urandom(768 * KiB))
        upload.commit(content_type="application/octet-stream", name=f"{n}.bin")
    rate = 1.25 * MB  # 3 MiB: about 2.5 s
    began = time.monotonic()
    outcome = Scrubber(store, rate=rate).run()
    seconds = time.monotonic() - began
    assert outcome.bytes == 4 * 768 * KiB
    assert 0.8 <= outcome.bytes / seconds / rate <= 1.2, outcome.bytes / seconds / MB


async def test_one_scrub_at_a_time_per_store(store: Store, config: Settings) -> None:
    lock = store.lock_scrub()
    assert lock is not None
    try:
        with pytest.raises(Busy):
            Scrubber(store, rate=MB).run()
        status, _out, err = await scrub_cli(config)
        assert status == 2
        assert "another scrub holds this store's scrub lock" in err
    finally:
        lock.release()


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_background_passes_mark_damage_and_export_metrics(
    start: type[Service], store: Store, config: Settings
) -> None:
    service = start("--workers", "1", "--scrub-period", "0.5", env=env_of(config))
    service.wait_ready(workers=1)
    assert service.request("POST", "/api/v1/buckets", json.dumps({"name": "photos"}).encode())[0] == 201
    for key, data in FILES.items():
        assert service.request("POST", f"/api/v1/files/photos/{key}", data)[0] == 201
    flip_a_byte(store, "photos", "a.txt", offset=10)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = service.request("GET", "/metrics")[1].decode()
        if metric(text, "storage_scrub_damaged_files_total", '{found_by="scrub"}') >= 1:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(service.output())
    assert service.request("GET", "/api/v1/files/photos/a.txt")[0] == 409
    assert service.request("GET", "/api/v1/files/photos/d.bin")[1] == FILES["d.bin"]
    assert metric(text, "storage_scrub_files_verified_total") >= len(FILES) - 1
    assert metric(text, "storage_scrub_bytes_verified_total") >= len(FILES["b/c.bin"])
    assert metric(text, "storage_scrub_last_complete_pass_timestamp_seconds") > time.time() - 60
    assert "DAMAGED photos/a.txt" in service.output()
