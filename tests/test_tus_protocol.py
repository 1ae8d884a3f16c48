"""The tus 1.0.0 front door through the real app, on both backends: the specification's MUST
lines one test each (core, creation, creation-with-upload, creation-defer-length, termination,
expiration, checksum), the service's own rules (bucket metadata, create-only unless x-upsert,
bucket limits), and hostile input: always the right 4xx, nothing committed, never a 5xx."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import socket
from typing import Any

import pytest
from tornado.httpclient import HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.web import Application

from storage_server.store import Store
from tests.conftest import Api, body_json
from tests.stored import stored

CREATE = "/api/v1/upload/resumable"
TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


def metadata(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


async def create(
    api: Api,
    length: int | None = 10,
    key: str = "a.bin",
    bucket: str = "photos",
    body: bytes | None = None,
    **headers: str,
) -> HTTPResponse:
    sent = {**TUS, "Upload-Metadata": metadata(bucketName=bucket, objectName=key)}
    sent.update({"Upload-Length": str(length)} if length is not None else {"Upload-Defer-Length": "1"})
    if body is not None:
        sent["Content-Type"] = OCTETS
    sent.update(headers)
    return await api.request("POST", CREATE, body if body is not None else b"", headers=sent)


async def new_upload(api: Api, length: int | None = 10, key: str = "a.bin", **headers: str) -> str:
    response = await create(api, length, key, **headers)
    assert response.code == 201, response.body
    location: str = response.headers["Location"]
    return location


async def patch(api: Api, url: str, offset: int, data: bytes, **headers: str) -> HTTPResponse:
    sent = {**TUS, "Content-Type": OCTETS, "Upload-Offset": str(offset), **headers}
    return await api.request("PATCH", url, data, headers=sent)


async def head(api: Api, url: str, **headers: str) -> HTTPResponse:
    return await api.request("HEAD", url, headers={**TUS, **headers})


@pytest.fixture
def photos(store: Store) -> str:
    store.create_bucket("photos")
    return "photos"


async def test_options_announces_the_version_extensions_and_max_size(api: Api) -> None:
    response = await api.request("OPTIONS", CREATE)
    assert response.code == 204
    assert response.headers["Tus-Version"] == "1.0.0"
    assert set(response.headers["Tus-Extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "termination",
        "expiration",
        "checksum",
    }
    assert int(response.headers["Tus-Max-Size"]) == 5 << 40
    assert set(response.headers["Tus-Checksum-Algorithm"].split(",")) == {"sha1", "md5", "sha256"}


async def test_every_answer_carries_tus_resumable(api: Api, photos: str) -> None:
    url = await new_upload(api)
    for response in (
        await head(api, url),
        await patch(api, url, 3, b"x"),
        await head(api, CREATE + "/0" * 1),
    ):
        assert response.headers["Tus-Resumable"] == "1.0.0"


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0", ""])
async def test_a_request_without_tus_resumable_1_0_0_is_refused_with_412(
    api: Api, photos: str, version: str | None
) -> None:
    url = await new_upload(api)
    headers = {} if version is None else {"Tus-Resumable": version}
    for method, target in (("POST", CREATE), ("HEAD", url), ("PATCH", url), ("DELETE", url)):
        response = await api.request(method, target, headers={"Content-Type": OCTETS, **headers})
        assert response.code == 412, (method, response.body)
        assert response.headers["Tus-Version"] == "1.0.0"
        if method != "HEAD":
            assert body_json(response)["code"] == "tus_version"
    assert (await head(api, url)).headers["Upload-Offset"] == "0"


async def test_creation_answers_201_with_the_upload_url_and_its_expiry(api: Api, photos: str) -> None:
    response = await create(api, 10)
    assert response.code == 201
    assert response.headers["Location"].startswith(CREATE + "/")
    assert response.headers["Upload-Expires"].endswith(" GMT")


async def test_head_answers_offset_length_metadata_and_no_store(api: Api, photos: str) -> None:
    url = await new_upload(
        api, 10, **{"Upload-Metadata": metadata(bucketName="photos", objectName="a.bin", filename="a.bin")}
    )
    response = await head(api, url)
    assert response.code == 200
    assert (response.headers["Upload-Offset"], response.headers["Upload-Length"]) == ("0", "10")
    assert response.headers["Cache-Control"] == "no-store"
    assert "filename" in response.headers["Upload-Metadata"]


async def test_a_patch_appends_at_the_offset_and_answers_204_with_the_new_offset(
    api: Api, photos: str
) -> None:
    url = await new_upload(api, 10)
    first = await patch(api, url, 0, b"0123")
    assert (first.code, first.headers["Upload-Offset"]) == (204, "4")
    assert first.headers["Upload-Expires"].endswith(" GMT")
    assert (await head(api, url)).headers["Upload-Offset"] == "4"


async def test_a_patch_at_another_offset_is_409_and_changes_nothing(api: Api, photos: str) -> None:
    url = await new_upload(api, 10)
    await patch(api, url, 0, b"0123")
    for offset in (0, 3, 5):
        response = await patch(api, url, offset, b"zz")
        assert (response.code, body_json(response)["code"]) == (409, "offset_mismatch")
    assert (await head(api, url)).headers["Upload-Offset"] == "4"


async def test_a_patch_that_is_not_offset_octet_stream_is_415(api: Api, photos: str) -> None:
    url = await new_upload(api, 10)
    response = await patch(api, url, 0, b"0123", **{"Content-Type": "application/octet-stream"})
    assert (response.code, body_json(response)["code"]) == (415, "unsupported_media_type")


async def test_the_last_chunk_commits_the_file_whole_and_removes_the_upload(
    api: Api, store: Store, photos: str
) -> None:
    data = bytes(range(256)) * 40
    url = await new_upload(api, len(data), "dir/whole.bin")
    for start in range(0, len(data), 3000):
        assert stored(store, photos, "dir/whole.bin") is None
        response = await patch(api, url, start, data[start : start + 3000])
        assert response.code == 204, response.body
    assert stored(store, photos, "dir/whole.bin") == data
    record = store.open_file(photos, "dir/whole.bin")
    assert (record.record.sha256, record.record.md5) == (
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data).hexdigest(),
    )
    record.close()
    assert (await head(api, url)).code == 404
    assert store.list_staged(photos) == []


async def test_chunks_of_several_mib_commit_with_the_digests_of_the_whole_file(
    api: Api, store: Store, photos: str
) -> None:
    data = hashlib.sha256(b"seed").digest() * (5 * 65_536 + 1000)  # 10 MiB and a bit
    url = await new_upload(api, len(data), "big.bin")
    for start in range(0, len(data), 3 << 20):
        response = await patch(api, url, start, data[start : start + (3 << 20)])
        assert response.code == 204, response.body
        if store.appends_in_place and start + (3 << 20) < len(data):  # one part, grown in place
            assert len(store.get_staged(url.rsplit("/", 1)[-1]).parts) == 1
    reader = store.open_file(photos, "big.bin")
    assert (reader.record.size, reader.record.sha256, reader.record.md5) == (
        len(data),
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data).hexdigest(),
    )
    reader.close()
    assert stored(store, photos, "big.bin") == data
    assert store.list_staged(photos) == []


async def test_creation_with_upload_keeps_the_first_chunk(api: Api, store: Store, photos: str) -> None:
    response = await create(api, 6, body=b"abc")
    assert (response.code, response.headers["Upload-Offset"]) == (201, "3")
    url = response.headers["Location"]
    assert (await patch(api, url, 3, b"def")).code == 204
    assert stored(store, photos, "a.bin") == b"abcdef"


async def test_creation_with_the_whole_upload_commits_at_once(api: Api, store: Store, photos: str) -> None:
    response = await create(
        api,
        5,
        key="t.txt",
        body=b"hello",
        **{"Upload-Metadata": metadata(bucketName="photos", objectName="t.txt")},
    )
    assert response.code == 201
    assert stored(store, photos, "t.txt") == b"hello"
    assert store.open_file(photos, "t.txt").record.content_type == "text/plain"


async def test_an_empty_upload_is_committed_at_creation(api: Api, store: Store, photos: str) -> None:
    assert (await create(api, 0)).code == 201
    assert stored(store, photos, "a.bin") == b""


async def test_a_deferred_length_comes_with_the_last_chunk(api: Api, store: Store, photos: str) -> None:
    url = await new_upload(api, None)
    response = await head(api, url)
    assert response.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in response.headers
    assert (await patch(api, url, 0, b"abc")).code == 204
    assert stored(store, photos, "a.bin") is None
    assert (await patch(api, url, 3, b"def", **{"Upload-Length": "6"})).code == 204
    assert stored(store, photos, "a.bin") == b"abcdef"


async def test_creation_needs_a_length_or_a_deferred_one(api: Api, photos: str) -> None:
    both = await create(api, 10, **{"Upload-Defer-Length": "1"})
    neither = await api.request(
        "POST", CREATE, b"", headers={**TUS, "Upload-Metadata": metadata(bucketName="photos", objectName="a")}
    )
    for response in (both, neither, await create(api, None, **{"Upload-Defer-Length": "2"})):
        assert (response.code, body_json(response)["code"]) == (400, "invalid_tus_header")


async def test_termination_removes_the_upload(api: Api, store: Store, photos: str) -> None:
    url = await new_upload(api, 10)
    await patch(api, url, 0, b"0123")
    assert (await api.request("DELETE", url, headers=TUS)).code == 204
    assert (await head(api, url)).code == 404
    gone = await patch(api, url, 4, b"45")
    assert (gone.code, body_json(gone)["code"]) == (404, "upload_not_found")
    assert store.list_staged(photos) == []


async def test_an_expired_upload_is_404(api: Api, http_server: HTTPServer, photos: str) -> None:
    url = await new_upload(api, 10)
    app = http_server.request_callback
    assert isinstance(app, Application)
    for rule in app.wildcard_router.rules:
        if "config" in rule.target_kwargs:
            config = rule.target_kwargs["config"]
            rule.target_kwargs["config"] = config.model_copy(update={"staged_expiry": 0.001})
    await asyncio.sleep(0.01)
    assert (await head(api, url)).code == 404
    assert (await patch(api, url, 0, b"01")).code == 404


@pytest.mark.parametrize("algorithm", ["sha1", "md5", "sha256"])
async def test_a_chunk_with_a_right_checksum_is_kept(api: Api, photos: str, algorithm: str) -> None:
    url = await new_upload(api, 10)
    digest = base64.b64encode(hashlib.new(algorithm, b"0123").digest()).decode()
    response = await patch(api, url, 0, b"0123", **{"Upload-Checksum": f"{algorithm} {digest}"})
    assert (response.code, response.headers["Upload-Offset"]) == (204, "4")


async def test_a_chunk_with_a_wrong_checksum_is_460_and_dropped(api: Api, photos: str) -> None:
    url = await new_upload(api, 10)
    await patch(api, url, 0, b"01")
    digest = base64.b64encode(hashlib.sha1(b"other").digest()).decode()
    response = await patch(api, url, 2, b"2345", **{"Upload-Checksum": f"sha1 {digest}"})
    assert (response.code, body_json(response)["code"]) == (460, "checksum_mismatch")
    assert (await head(api, url)).headers["Upload-Offset"] == "2"


@pytest.mark.parametrize("checksum", ["crc32 AAAAAA==", "sha1 not-base64!", "sha1 AAAA", "sha1"])
async def test_an_unsupported_or_malformed_checksum_is_400(api: Api, photos: str, checksum: str) -> None:
    url = await new_upload(api, 10)
    response = await patch(api, url, 0, b"0123", **{"Upload-Checksum": checksum})
    assert (response.code, body_json(response)["code"]) == (400, "invalid_tus_header")
    assert (await head(api, url)).headers["Upload-Offset"] == "0"


async def test_a_file_that_appeared_meanwhile_fails_the_last_patch_with_412(
    api: Api, store: Store, photos: str
) -> None:
    url = await new_upload(api, 4)
    assert (await patch(api, url, 0, b"ab")).code == 204
    assert (await api.upload(photos, "a.bin", b"someone else's")).code == 201
    last = await patch(api, url, 2, b"cd")
    assert (last.code, body_json(last)["code"]) == (412, "precondition_failed")
    assert "appeared" in body_json(last)["detail"]
    assert stored(store, photos, "a.bin") == b"someone else's"
    again = await patch(api, url, 4, b"")  # the upload is kept: the same answer again
    assert again.code == 412
    await api.request("DELETE", f"/api/v1/files/{photos}/a.bin")
    assert (await patch(api, url, 4, b"")).code == 204  # and it commits once the way is free
    assert stored(store, photos, "a.bin") == b"abcd"


async def test_x_upsert_replaces_an_existing_file(api: Api, store: Store, photos: str) -> None:
    assert (await api.upload(photos, "a.bin", b"old")).code == 201
    url = await new_upload(api, 3, **{"x-upsert": "true"})
    assert (await patch(api, url, 0, b"new")).code == 204
    assert stored(store, photos, "a.bin") == b"new"


async def test_bucket_limits_are_checked_at_creation(api: Api, store: Store, photos: str) -> None:
    store.create_bucket("small", file_size_limit=5, allowed_mime_types=["image/*"])
    big = await create(api, 6, "x.png", "small")
    assert (big.code, body_json(big)["code"]) == (413, "payload_too_large")
    wrong = await create(api, 5, "x.txt", "small")
    assert (wrong.code, body_json(wrong)["code"]) == (415, "mime_type_not_allowed")
    typed = await create(
        api,
        5,
        **{"Upload-Metadata": metadata(bucketName="small", objectName="x", contentType="image/png")},
    )
    assert typed.code == 201


HOSTILE_CREATIONS: list[tuple[dict[str, str], int, str]] = [
    ({"Upload-Length": "-1"}, 400, "invalid_tus_header"),
    ({"Upload-Length": "1e3"}, 400, "invalid_tus_header"),
    ({"Upload-Length": "9" * 30}, 400, "invalid_tus_header"),
    ({"Upload-Length": str(6 << 40)}, 413, "payload_too_large"),
    ({"Upload-Metadata": "bucketName cGhvdG9z,objectName !!notbase64"}, 400, "invalid_tus_header"),
    ({"Upload-Metadata": "bucketName cGhvdG9z,bucketName cGhvdG9z"}, 400, "invalid_tus_header"),
    ({"Upload-Metadata": metadata(objectName="a.bin")}, 400, "invalid_tus_header"),
    ({"Upload-Metadata": metadata(bucketName="photos", objectName="../etc/passwd")}, 400, "invalid_key"),
    ({"Upload-Metadata": metadata(bucketName="nope", objectName="a")}, 404, "bucket_not_found"),
    ({"Upload-Metadata": metadata(bucketName="Bad Name", objectName="a")}, 400, "invalid_bucket_name"),
]


@pytest.mark.parametrize(("headers", "status", "code"), HOSTILE_CREATIONS)
async def test_hostile_creations_are_refused(
    api: Api, store: Store, photos: str, headers: dict[str, str], status: int, code: str
) -> None:
    response = await create(api, 10, **headers)
    assert (response.code, body_json(response)["code"]) == (status, code)
    assert store.list_staged(photos) == []


@pytest.mark.parametrize("offset", ["-1", "4x", "99999999999999999999999", "", "²"])
async def test_hostile_offsets_are_400(api: Api, photos: str, offset: str) -> None:
    url = await new_upload(api, 10)
    response = await api.request(
        "PATCH", url, b"01", headers={**TUS, "Content-Type": OCTETS, "Upload-Offset": offset}
    )
    assert (response.code, body_json(response)["code"]) == (400, "invalid_tus_header")


async def test_a_chunk_past_the_length_is_413_and_nothing_is_kept(
    api: Api, store: Store, photos: str
) -> None:
    url = await new_upload(api, 4)
    response = await patch(api, url, 0, b"01234")
    assert (response.code, body_json(response)["code"]) == (413, "past_upload_length")
    assert (await head(api, url)).headers["Upload-Offset"] == "0"
    assert stored(store, photos, "a.bin") is None


async def test_a_patch_after_the_end_is_404(api: Api, photos: str) -> None:
    url = await new_upload(api, 2)
    assert (await patch(api, url, 0, b"01")).code == 204
    response = await patch(api, url, 2, b"2")
    assert (response.code, body_json(response)["code"]) == (404, "upload_not_found")


@pytest.mark.parametrize("upload_id", ["0" * 32, "not-an-id", "..", "a" * 300])
async def test_unknown_uploads_are_404(api: Api, upload_id: str) -> None:
    response = await head(api, f"{CREATE}/{upload_id}")
    assert response.code == 404
    patched = await patch(api, f"{CREATE}/{upload_id}", 0, b"x")
    assert (patched.code, body_json(patched)["code"]) == (404, "upload_not_found")


async def test_two_patches_at_once_never_interleave(api: Api, store: Store, photos: str) -> None:
    size = 4 << 20
    url = await new_upload(api, size)

    async def slow(write: Any) -> None:
        for _ in range(16):
            await write(b"a" * (128 << 10))
            await asyncio.sleep(0.02)

    sent = {**TUS, "Content-Type": OCTETS, "Upload-Offset": "0", "Content-Length": str(2 << 20)}
    first = asyncio.ensure_future(api.request("PATCH", url, body_producer=slow, headers=sent))
    await asyncio.sleep(0.15)
    second = await patch(api, url, 0, b"b" * (1 << 20))
    assert second.code in (409, 423), second.body
    assert (await first).code == 204
    assert (await head(api, url)).headers["Upload-Offset"] == str(2 << 20)
    rest = await patch(api, url, 2 << 20, b"c" * (2 << 20))
    assert rest.code == 204
    assert stored(store, photos, "a.bin") == b"a" * (2 << 20) + b"c" * (2 << 20)


async def cut_patch(api: Api, url: str, offset: int, sent: bytes, declared: int, **headers: str) -> None:
    """A PATCH whose client goes away after `sent` of `declared` bytes."""
    port = int(api.url("/").split(":")[2].split("/")[0])
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = (
        f"PATCH {url} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nContent-Type: {OCTETS}\r\n"
        f"Upload-Offset: {offset}\r\nContent-Length: {declared}\r\n{extra}\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request + sent)
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.transport.set_write_buffer_limits(0)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.close()
    del reader


async def offset_after_cut(api: Api, url: str) -> int:
    for _ in range(100):
        response = await head(api, url)
        if response.code == 200:
            value = int(response.headers["Upload-Offset"])
            if value:
                return value
        await asyncio.sleep(0.05)
    return 0


async def test_a_cut_patch_keeps_what_arrived_and_the_upload_resumes(
    api: Api, store: Store, photos: str
) -> None:
    data = hashlib.sha256(b"seed").digest() * (64 << 10)  # 2 MiB
    url = await new_upload(api, len(data))
    await cut_patch(api, url, 0, data[:1_500_000], len(data))
    offset = await offset_after_cut(api, url)
    assert 0 < offset <= 1_500_000
    assert (await patch(api, url, offset, data[offset:])).code == 204
    assert stored(store, photos, "a.bin") == data


async def test_a_cut_patch_with_a_checksum_keeps_nothing(api: Api, photos: str) -> None:
    data = b"x" * (2 << 20)
    url = await new_upload(api, len(data))
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    await cut_patch(api, url, 0, data[:1_500_000], len(data), **{"Upload-Checksum": f"sha256 {digest}"})
    await asyncio.sleep(0.5)
    assert (await head(api, url)).headers["Upload-Offset"] == "0"
