"""Upload checksums: a match stores the file, a mismatch stores nothing, a malformed one is a 400."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest

from storage_server.store import Store
from tests.conftest import Api, body_json
from tests.stored import temp_files

DATA = os.urandom(200_000)
MULTIPART = {"Content-Type": "multipart/form-data; boundary=XYZ"}


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def multipart(data: bytes) -> bytes:
    return (
        b'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n\r\n'
        + data
        + b"\r\n--XYZ--\r\n"
    )


GOOD = {
    "Content-MD5": b64(hashlib.md5(DATA).digest()),
    "Content-Digest": f"sha-256=:{b64(hashlib.sha256(DATA).digest())}:",
    "Repr-Digest": (
        f"sha-512=:{b64(hashlib.sha512(DATA).digest())}:, sha-256=:{b64(hashlib.sha256(DATA).digest())}:"
    ),
    "X-Checksum-SHA256": hashlib.sha256(DATA).hexdigest(),
}
BAD = {
    "Content-MD5": b64(hashlib.md5(b"other").digest()),
    "Content-Digest": f"sha-256=:{b64(hashlib.sha256(b'other').digest())}:",
    "Repr-Digest": f"sha-512=:{b64(hashlib.sha512(b'other').digest())}:",
    "X-Checksum-SHA256": hashlib.sha256(b"other").hexdigest(),
}
MALFORMED = {
    "Content-MD5": "not base64!",
    "Content-Digest": "sha-256=abc",
    "Repr-Digest": f"sha-256=:{b64(b'short')}:",
    "X-Checksum-SHA256": "xyz",
}


@pytest.fixture
def photos(store: Store) -> str:
    store.create_bucket("photos", public=False, description=None)
    up = store.begin_upload("photos", "f.bin")
    up.write(b"previous version")
    up.commit(content_type="application/octet-stream", name="f.bin")
    return "photos"


async def previous_is_intact(api: Api) -> None:
    assert (await api.request("GET", "/api/v1/files/photos/f.bin")).body == b"previous version"


@pytest.mark.parametrize("header", sorted(GOOD))
async def test_a_matching_checksum_stores_the_file(api: Api, photos: str, header: str) -> None:
    response = await api.upload(photos, "f.bin", DATA, headers={header: GOOD[header]})
    assert response.code == 201, response.body
    assert (await api.request("GET", "/api/v1/files/photos/f.bin")).body == DATA


@pytest.mark.parametrize("header", sorted(BAD))
async def test_a_mismatch_is_400_bad_digest_and_keeps_the_previous_version(
    api: Api, store: Store, photos: str, header: str
) -> None:
    response = await api.upload(photos, "f.bin", DATA, headers={header: BAD[header]})
    assert (response.code, body_json(response)["code"]) == (400, "bad_digest")
    await previous_is_intact(api)
    assert temp_files(store) == []


@pytest.mark.parametrize("header", sorted(MALFORMED))
async def test_a_malformed_checksum_is_400_before_the_body(api: Api, photos: str, header: str) -> None:
    response = await api.upload(
        photos, "f.bin", DATA, headers={header: MALFORMED[header]}, expect_100_continue=True
    )
    assert (response.code, body_json(response)["code"]) == (400, "invalid_digest")
    await previous_is_intact(api)


async def test_unknown_digest_algorithms_are_ignored(api: Api, photos: str) -> None:
    response = await api.upload(photos, "f.bin", DATA, headers={"Repr-Digest": "crc32c=:AAAAAA==:"})
    assert response.code == 201


async def test_all_checksums_at_once(api: Api, photos: str) -> None:
    assert (await api.upload(photos, "f.bin", DATA, headers=GOOD)).code == 201


async def test_multipart_body_digests_cover_the_message_and_file_digests_the_file(
    api: Api, photos: str
) -> None:
    body = multipart(DATA)
    headers = {
        **MULTIPART,
        "Content-MD5": b64(hashlib.md5(body).digest()),
        "Content-Digest": f"sha-256=:{b64(hashlib.sha256(body).digest())}:",
        "X-Checksum-SHA256": hashlib.sha256(DATA).hexdigest(),
    }
    assert (await api.upload(photos, "f.bin", body, headers=headers)).code == 201
    wrong = {**MULTIPART, "Content-Digest": f"sha-256=:{b64(hashlib.sha256(DATA).digest())}:"}
    response = await api.upload(photos, "f.bin", body, headers=wrong)  # the file's digest, not the body's
    assert (response.code, body_json(response)["code"]) == (400, "bad_digest")
