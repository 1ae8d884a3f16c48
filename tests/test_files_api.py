"""File routes through a real server: streamed uploads (raw and multipart), downloads, deletes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import urllib.parse
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from tornado.httpclient import HTTPResponse

from storage_server.settings import Settings
from storage_server.store import Store
from tests.conftest import Api, body_json
from tests.stored import all_objects, contents, stored, temp_files

FILE_FIELDS = {"bucket", "path", "name", "size", "content_type", "sha256", "etag", "created_at", "updated_at"}


def multipart(
    data: bytes, *, filename: str = "photo.png", ctype: str = "image/png", name: str = "file"
) -> bytes:
    return (
        b"--BOUNDARY\r\n"
        b'Content-Disposition: form-data; name="comment"\r\n\r\nnot the file\r\n'
        b"--BOUNDARY\r\n"
        + f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'.encode()
        + f"Content-Type: {ctype}\r\n\r\n".encode()
        + data
        + b"\r\n--BOUNDARY--\r\n"
    )


MULTIPART = {"Content-Type": "multipart/form-data; boundary=BOUNDARY"}


async def raw_exchange(api: Api, request: bytes, read_timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh connection and return all the server answers until it closes."""
    port = urllib.parse.urlsplit(api.url("/")).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), read_timeout)
    finally:
        writer.close()


async def wait_for(condition: Callable[[], bool], within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


@pytest.fixture
def photos(store: Store) -> str:
    store.create_bucket("photos", public=False, description=None)
    return "photos"


async def test_raw_upload_returns_201_with_the_file(api: Api, store: Store, photos: str) -> None:
    data = os.urandom(100_000)
    response = await api.upload(
        photos, "docs/report.bin", data, headers={"Content-Type": "application/x-thing"}
    )
    assert response.code == 201
    result = body_json(response)
    assert result["success"] is True
    record = result["file"]
    assert set(record) == FILE_FIELDS
    assert record["bucket"] == photos
    assert record["path"] == "docs/report.bin"
    assert record["name"] == "report.bin"
    assert record["size"] == len(data)
    assert record["content_type"] == "application/x-thing"
    assert record["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["etag"] == f'"{record["sha256"]}"'
    assert stored(store, photos, "docs/report.bin") == data
    assert temp_files(store) == []


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_multipart_upload_stores_only_the_file_part(
    api: Api, store: Store, photos: str, method: str
) -> None:
    data = os.urandom(300_000) + b"\r\n--BOUNDAR"  # a near-boundary inside the data
    response = await api.request(
        method, f"/api/v1/files/{photos}/img/p.png", multipart(data), headers=MULTIPART
    )
    assert response.code == 201, response.body
    record = body_json(response)["file"]
    assert (record["name"], record["content_type"], record["size"]) == ("photo.png", "image/png", len(data))
    assert stored(store, photos, "img/p.png") == data


async def test_multipart_filename_in_unicode_round_trips(api: Api, photos: str) -> None:
    body = multipart(b"x", filename="résumé 履歴書.pdf", ctype="application/octet-stream")
    record = body_json(await api.upload(photos, "cv", body, headers=MULTIPART))["file"]
    assert record["name"] == "résumé 履歴書.pdf"
    assert record["content_type"] == "application/pdf"  # guessed: the part said octet-stream


async def test_multipart_without_a_file_part_returns_400_and_stores_nothing(
    api: Api, store: Store, photos: str
) -> None:
    response = await api.upload(photos, "a.bin", multipart(b"x", name="other"), headers=MULTIPART)
    assert response.code == 400
    assert body_json(response)["code"] == "missing_file_part"
    assert (await api.request("GET", f"/api/v1/files/{photos}/a.bin")).code == 404
    assert temp_files(store) == []


async def test_truncated_multipart_returns_400_and_keeps_the_previous_version(
    api: Api, store: Store, photos: str
) -> None:
    await api.upload(photos, "a.bin", b"previous")
    truncated = multipart(b"y" * 5000)[:-30]
    response = await api.upload(photos, "a.bin", truncated, headers=MULTIPART)
    assert response.code == 400
    assert body_json(response)["code"] == "malformed_multipart"
    assert (await api.request("GET", f"/api/v1/files/{photos}/a.bin")).body == b"previous"
    assert temp_files(store) == []


async def test_multipart_without_boundary_returns_400(api: Api, photos: str) -> None:
    response = await api.upload(photos, "a", b"x", headers={"Content-Type": "multipart/form-data"})
    assert response.code == 400
    assert body_json(response)["code"] == "malformed_multipart"


@pytest.mark.parametrize(
    ("sent", "key", "expected"),
    [
        (None, "photo.jpg", "image/jpeg"),
        ("application/octet-stream", "notes.txt", "text/plain"),
        ("application/octet-stream", "blob", "application/octet-stream"),
        ("text/csv; charset=utf-8", "data.bin", "text/csv; charset=utf-8"),
    ],
)
async def test_content_type_is_the_declared_one_else_guessed(
    api: Api, photos: str, sent: str | None, key: str, expected: str
) -> None:
    headers = {"Content-Type": sent} if sent else {}
    record = body_json(await api.upload(photos, key, b"x", headers=headers))["file"]
    assert record["content_type"] == expected
    response = await api.request("GET", f"/api/v1/files/{photos}/{key}")
    assert response.headers["Content-Type"] == expected


async def test_x_filename_sets_the_original_name(api: Api, photos: str) -> None:
    quoted = urllib.parse.quote("Ünïcode ☃.txt")
    record = body_json(await api.upload(photos, "k", b"x", headers={"X-Filename": quoted}))["file"]
    assert record["name"] == "Ünïcode ☃.txt"
    assert record["content_type"] == "text/plain"


async def test_bad_x_filename_returns_400(api: Api, photos: str) -> None:
    response = await api.upload(photos, "k", b"x", headers={"X-Filename": "%00evil"})
    assert response.code == 400
    assert body_json(response)["code"] == "invalid_filename"


async def test_zero_byte_file(api: Api, store: Store, photos: str) -> None:
    record = body_json(await api.upload(photos, "empty", b""))["file"]
    assert record["size"] == 0
    assert record["sha256"] == hashlib.sha256(b"").hexdigest()
    response = await api.request("GET", f"/api/v1/files/{photos}/empty")
    assert (response.code, response.body, response.headers["Content-Length"]) == (200, b"", "0")
    assert stored(store, photos, "empty") == b""


async def test_download_streams_exact_bytes_with_headers(api: Api, photos: str) -> None:
    data = os.urandom(1_000_003)
    record = body_json(await api.upload(photos, "big.bin", data, headers={"X-Filename": "big.bin"}))["file"]
    response = await api.request("GET", f"/api/v1/files/{photos}/big.bin")
    assert response.code == 200
    assert response.body == data
    headers = response.headers
    assert headers["Content-Length"] == str(len(data))
    assert headers["Content-Type"] == "application/octet-stream"
    assert headers["ETag"] == record["etag"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Disposition"] == "inline; filename=\"big.bin\"; filename*=UTF-8''big.bin"
    modified = parsedate_to_datetime(headers["Last-Modified"])
    assert modified.isoformat()[:19] == record["updated_at"][:19]


@pytest.mark.parametrize(
    ("name", "fallback"),
    [
        ('evil".txt; filename="x.exe', "evil_.txt; filename=_x.exe"),
        ("日本語.txt", "___.txt"),
        ("a\\b", "a_b"),
        ("emoji 😀", "emoji _"),
    ],
)
async def test_content_disposition_cannot_be_injected(
    api: Api, photos: str, name: str, fallback: str
) -> None:
    await api.upload(photos, "f", b"x", headers={"X-Filename": urllib.parse.quote(name)})
    response = await api.request("GET", f"/api/v1/files/{photos}/f")
    assert response.code == 200
    value = response.headers["Content-Disposition"]
    assert value == f"inline; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"
    assert value.count('"') == 2


async def test_nested_paths_and_encoded_slashes_address_the_same_file(api: Api, photos: str) -> None:
    assert (await api.upload(photos, "data/2024/01/report.csv", b"csv")).code == 201
    for path in ("data/2024/01/report.csv", "data%2F2024%2F01%2Freport.csv", "data/2024%2f01/report.csv"):
        response = await api.request("GET", f"/api/v1/files/{photos}/{path}")
        assert (response.code, response.body) == (200, b"csv")
    assert (await api.request("DELETE", f"/api/v1/files/{photos}/data%2F2024%2F01%2Freport.csv")).code == 204
    assert (await api.request("GET", f"/api/v1/files/{photos}/data/2024/01/report.csv")).code == 404


async def test_unicode_keys_round_trip(api: Api, store: Store, photos: str) -> None:
    key = "文件夹/ünïcødé file ☃.txt"
    quoted = urllib.parse.quote(key)
    record = body_json(await api.upload(photos, quoted, b"snow"))["file"]
    assert record["path"] == key
    assert (await api.request("GET", f"/api/v1/files/{photos}/{quoted}")).body == b"snow"
    assert stored(store, photos, key) == b"snow"


async def test_overwrite_replaces_content_and_keeps_created_at(api: Api, photos: str) -> None:
    first = body_json(await api.upload(photos, "a.txt", b"one"))["file"]
    second = body_json(await api.upload(photos, "a.txt", b"two!"))["file"]
    assert second["created_at"] == first["created_at"]
    assert second["updated_at"] > first["updated_at"]
    assert second["sha256"] != first["sha256"]
    assert (await api.request("GET", f"/api/v1/files/{photos}/a.txt")).body == b"two!"


async def test_get_missing_file_or_bucket_returns_404(api: Api, photos: str) -> None:
    missing_file = await api.request("GET", f"/api/v1/files/{photos}/nope.txt")
    assert (missing_file.code, body_json(missing_file)["code"]) == (404, "file_not_found")
    missing_bucket = await api.request("GET", "/api/v1/files/nobucket/nope.txt")
    assert (missing_bucket.code, body_json(missing_bucket)["code"]) == (404, "bucket_not_found")


async def test_get_of_a_folder_returns_404(api: Api, photos: str) -> None:
    await api.upload(photos, "dir/file", b"x")
    assert (await api.request("GET", f"/api/v1/files/{photos}/dir")).code == 404


async def test_delete_file_returns_204_even_when_already_gone(api: Api, store: Store, photos: str) -> None:
    await api.upload(photos, "a/b/c.txt", b"x")
    for _ in range(2):
        response = await api.request("DELETE", f"/api/v1/files/{photos}/a/b/c.txt")
        assert (response.code, response.body) == (204, b"")
    assert contents(store, photos) == []  # empty folders pruned


async def test_delete_file_in_missing_bucket_returns_404(api: Api) -> None:
    response = await api.request("DELETE", "/api/v1/files/nobucket/a.txt")
    assert (response.code, body_json(response)["code"]) == (404, "bucket_not_found")


async def test_upload_to_missing_bucket_returns_404_and_creates_nothing(api: Api, store: Store) -> None:
    response = await api.upload("nobucket", "a/b.txt", b"x")
    assert (response.code, body_json(response)["code"]) == (404, "bucket_not_found")
    assert all_objects(store) == []


async def test_file_and_folder_conflicts_return_409(api: Api, photos: str) -> None:
    await api.upload(photos, "a/b", b"file")
    for key in ("a/b/c", "a"):
        response = await api.upload(photos, key, b"x")
        assert (response.code, body_json(response)["code"]) == (409, "conflict")
    assert (await api.request("GET", f"/api/v1/files/{photos}/a/b")).body == b"file"


async def test_the_seed_traversal_cannot_touch_a_sibling_bucket(api: Api, store: Store) -> None:
    # The seed service let POST /files/abc/%2e%2e/abcd/x write into bucket abcd.
    await api.create_bucket("abc")
    await api.create_bucket("abcd")
    await api.upload("abcd", "x", b"precious")
    for path in ("abc/%2e%2e/abcd/x", "abc/%2E%2E/abcd/x", "abc/..%2Fabcd/x", "abc/%2e%2e%2fabcd%2fx"):
        upload = await api.upload(*path.split("/", 1), b"overwritten")
        assert upload.code == 400, path
        delete = await api.request("DELETE", f"/api/v1/files/{path}")
        assert delete.code == 400, path
    assert stored(store, "abcd", "x") == b"precious"
    assert contents(store, "abc") == []


async def test_upload_limit_rejects_a_declared_length_before_reading(
    api: Api, store: Store, photos: str, config: Settings
) -> None:
    object.__setattr__(config, "max_upload_size", 1000)
    response = await api.upload(photos, "big", b"x" * 1001)
    assert (response.code, body_json(response)["code"]) == (413, "payload_too_large")
    assert (await api.upload(photos, "ok", b"x" * 1000)).code == 201
    assert temp_files(store) == []


async def test_upload_limit_stops_a_chunked_body(
    api: Api, store: Store, photos: str, config: Settings
) -> None:
    object.__setattr__(config, "max_upload_size", 100_000)

    async def produce(write: Any) -> None:
        for _ in range(20):
            await write(b"x" * 10_000)

    response = await api.request("POST", f"/api/v1/files/{photos}/big", body_producer=produce)
    assert response.code == 413
    assert (await api.request("GET", f"/api/v1/files/{photos}/big")).code == 404
    await wait_for(lambda: temp_files(store) == [])


async def test_a_large_streamed_upload_round_trips(api: Api, store: Store, photos: str) -> None:
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()

    async def produce(write: Any) -> None:
        for i in range(24):
            chunk = block[i:] + block[:i]
            digest.update(chunk)
            await write(chunk)

    response = await api.request("PUT", f"/api/v1/files/{photos}/stream.bin", body_producer=produce)
    assert response.code == 201
    assert body_json(response)["file"]["sha256"] == digest.hexdigest()
    received = hashlib.sha256()
    size = 0

    def consume(chunk: bytes) -> None:
        nonlocal size
        size += len(chunk)
        received.update(chunk)

    download = await api.request("GET", f"/api/v1/files/{photos}/stream.bin", streaming_callback=consume)
    assert (download.code, size, received.hexdigest()) == (200, 24 << 20, digest.hexdigest())


async def test_client_disconnect_mid_upload_leaves_nothing(api: Api, store: Store, photos: str) -> None:
    await api.upload(photos, "a.bin", b"previous")
    port = urllib.parse.urlsplit(api.url("/")).port
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"POST /api/v1/files/{photos}/a.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n".encode()
        + b"z" * 300_000
    )
    await writer.drain()
    await wait_for(lambda: len(temp_files(store)) == 1)
    writer.close()
    await wait_for(lambda: temp_files(store) == [])
    assert (await api.request("GET", f"/api/v1/files/{photos}/a.bin")).body == b"previous"


async def test_stalled_upload_is_aborted_after_the_stall_timeout(api: Api, store: Store, photos: str) -> None:
    request = f"POST /api/v1/files/{photos}/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n".encode()
    answer = await raw_exchange(api, request + b"partial", read_timeout=10)  # stall_timeout is 2 s in tests
    assert answer == b""  # the connection was dropped without an answer
    await wait_for(lambda: temp_files(store) == [])
    assert (await api.request("GET", f"/api/v1/files/{photos}/slow")).code == 404


async def test_client_disconnect_mid_download_is_quiet(
    api: Api, photos: str, caplog: pytest.LogCaptureFixture
) -> None:
    await api.upload(photos, "big.bin", os.urandom(8 << 20))
    port = urllib.parse.urlsplit(api.url("/")).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET /api/v1/files/{photos}/big.bin HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    await reader.readexactly(100_000)
    writer.transport.abort()
    await asyncio.sleep(0.3)
    assert (await api.request("GET", "/health")).code == 200
    assert [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")] == []


async def test_requests_on_a_keep_alive_connection_after_an_upload(api: Api, photos: str) -> None:
    # Two requests on one connection: the upload's body must be fully consumed.
    body = b"hello"
    request = (
        f"POST /api/v1/files/{photos}/k HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        + body
        + f"GET /api/v1/files/{photos}/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )
    answer = await raw_exchange(api, request)
    assert answer.count(b"HTTP/1.1 201") == 1
    assert answer.count(b"HTTP/1.1 200") == 1
    assert answer.endswith(b"hello")
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1].split(b"HTTP/1.1")[0])["success"] is True


async def _upload_status(api: Api, photos: str, key: str, data: bytes) -> HTTPResponse:
    return await api.upload(photos, key, data)


async def test_concurrent_uploads_of_one_key_keep_one_whole_version(
    api: Api, store: Store, photos: str
) -> None:
    versions = [bytes([i]) * 200_000 for i in range(10)]
    responses = await asyncio.gather(*(_upload_status(api, photos, "same", v) for v in versions))
    assert [r.code for r in responses] == [201] * 10
    assert (await api.request("GET", f"/api/v1/files/{photos}/same")).body in versions
    assert temp_files(store) == []


async def test_a_slow_but_steady_upload_outlives_the_stall_timeout(api: Api, photos: str) -> None:
    async def produce(write: Any) -> None:
        for _ in range(8):  # 3.5 s in all, never 2 s (the test stall_timeout) without a byte
            await write(b"s" * 1000)
            await asyncio.sleep(0.5)

    response = await api.request("PUT", f"/api/v1/files/{photos}/slow.bin", body_producer=produce)
    assert response.code == 201
    assert body_json(response)["file"]["size"] == 8000


async def test_an_early_error_on_a_small_body_keeps_the_connection(api: Api, photos: str) -> None:
    # The 404 is decided before the body is read; a small body is read anyway, so the answer
    # arrives intact and the connection carries on to the next request.
    request = (
        b"PUT /api/v1/files/nobucket/a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n"
        + b"x" * 5000
        + b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    answer = await raw_exchange(api, request)
    assert answer.startswith(b"HTTP/1.1 404")
    assert b"bucket_not_found" in answer
    assert b"HTTP/1.1 200" in answer
