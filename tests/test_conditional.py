"""HEAD, byte ranges and conditional requests (RFC 9110) on downloads and uploads."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from email.utils import format_datetime, parsedate_to_datetime

import pytest

from storage_server.backends import open_store
from storage_server.native.conditional import etag
from storage_server.settings import Settings
from storage_server.store import Store
from tests.conftest import Api, body_json

DATA = bytes(range(256)) * 40  # 10,240 bytes
URL = "/api/v1/files/photos/doc.bin"


@pytest.fixture
def stored(store: Store) -> str:
    store.create_bucket("photos", public=False, description=None)
    upload = store.begin_upload("photos", "doc.bin")
    upload.write(DATA)
    record = upload.commit(content_type="application/octet-stream", name="doc.bin")
    return etag(record)


async def test_head_has_the_get_headers_and_no_body(api: Api, stored: str) -> None:
    get = await api.request("GET", URL)
    head = await api.request("HEAD", URL)
    assert (head.code, head.body) == (200, b"")
    for name in ("Content-Type", "Content-Length", "ETag", "Last-Modified", "Accept-Ranges", "Repr-Digest"):
        assert head.headers[name] == get.headers[name], name
    assert head.headers["Content-Length"] == str(len(DATA))


async def test_full_download_carries_repr_digest_and_accept_ranges(api: Api, stored: str) -> None:
    response = await api.request("GET", URL)
    assert response.headers["Accept-Ranges"] == "bytes"
    expected = base64.b64encode(hashlib.sha256(DATA).digest()).decode()
    assert response.headers["Repr-Digest"] == f"sha-256=:{expected}:"
    assert response.headers["ETag"] == stored


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=0-99", 0, 99), ("bytes=100-", 100, len(DATA) - 1), ("bytes=-10", len(DATA) - 10, len(DATA) - 1),
     ("bytes=5000-999999", 5000, len(DATA) - 1), ("bytes=-999999", 0, len(DATA) - 1), ("bytes=7-7", 7, 7)],
)  # fmt: skip
async def test_ranges_return_206_with_exact_bytes(
    api: Api, stored: str, header: str, first: int, last: int
) -> None:
    response = await api.request("GET", URL, headers={"Range": header})
    assert response.code == 206
    assert response.body == DATA[first : last + 1]
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/{len(DATA)}"
    assert response.headers["Content-Length"] == str(last - first + 1)
    assert response.headers["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize("header", ["bytes=10240-", "bytes=99999-100000", "bytes=-0"])
async def test_unsatisfiable_range_is_416_with_the_size(api: Api, stored: str, header: str) -> None:
    response = await api.request("GET", URL, headers={"Range": header})
    assert response.code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(DATA)}"
    assert body_json(response)["code"] == "range_not_satisfiable"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=5-2", "bytes=abc", "bytes=-"])
async def test_multi_and_invalid_ranges_get_the_whole_file(api: Api, stored: str, header: str) -> None:
    response = await api.request("GET", URL, headers={"Range": header})
    assert (response.code, response.body) == (200, DATA)


async def test_if_range_with_the_current_etag_or_date_serves_the_range(api: Api, stored: str) -> None:
    modified = (await api.request("HEAD", URL)).headers["Last-Modified"]
    for validator in (stored, modified):
        response = await api.request("GET", URL, headers={"Range": "bytes=0-9", "If-Range": validator})
        assert (response.code, response.body) == (206, DATA[:10])


async def test_if_range_with_an_old_validator_serves_the_whole_file(api: Api, stored: str) -> None:
    for validator in ('"old"', "Mon, 01 Jan 2001 00:00:00 GMT", f"W/{stored}"):
        response = await api.request("GET", URL, headers={"Range": "bytes=0-9", "If-Range": validator})
        assert (response.code, response.body) == (200, DATA)


async def test_if_none_match_gives_304_with_the_etag(api: Api, stored: str) -> None:
    for value in (stored, f"W/{stored}", f'"other", {stored}', "*"):
        response = await api.request("GET", URL, headers={"If-None-Match": value})
        assert (response.code, response.body) == (304, b""), value
        assert response.headers["ETag"] == stored
    assert (await api.request("GET", URL, headers={"If-None-Match": '"other"'})).code == 200


async def test_if_modified_since(api: Api, stored: str) -> None:
    modified = parsedate_to_datetime((await api.request("HEAD", URL)).headers["Last-Modified"])
    later = format_datetime(modified.replace(year=modified.year + 1), usegmt=True)
    earlier = format_datetime(modified.replace(year=modified.year - 1), usegmt=True)
    assert (await api.request("GET", URL, headers={"If-Modified-Since": later})).code == 304
    assert (await api.request("GET", URL, headers={"If-Modified-Since": earlier})).code == 200
    assert (await api.request("GET", URL, headers={"If-Modified-Since": "not a date"})).code == 200
    # If-None-Match takes precedence over If-Modified-Since
    both = {"If-None-Match": '"other"', "If-Modified-Since": later}
    assert (await api.request("GET", URL, headers=both)).code == 200


async def test_if_match_and_if_unmodified_since_give_412(api: Api, stored: str) -> None:
    assert (await api.request("GET", URL, headers={"If-Match": stored})).code == 200
    assert (await api.request("GET", URL, headers={"If-Match": "*"})).code == 200
    for headers in (
        {"If-Match": '"other"'},
        {"If-Match": f"W/{stored}"},
        {"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"},
    ):
        response = await api.request("GET", URL, headers=headers)
        assert response.code == 412, headers
        assert body_json(response)["code"] == "precondition_failed"
        assert (await api.request("HEAD", URL, headers=headers)).code == 412


async def test_etag_is_the_same_for_the_same_bytes_and_survives_a_new_server(
    api: Api, config: Settings, stored: str
) -> None:
    again = body_json(await api.upload("photos", "copy.bin", DATA))["file"]["etag"]
    assert again == stored == f'"{hashlib.sha256(DATA).hexdigest()}"'
    fresh = open_store(config)  # as another worker, or after a restart, would see it
    reader = fresh.open_file("photos", "doc.bin")
    reader.close()
    assert etag(reader.record) == stored


async def test_if_none_match_star_creates_only(api: Api, stored: str) -> None:
    create_only = {"If-None-Match": "*"}
    taken = await api.upload(
        "photos", "doc.bin", b"overwrite?", headers=create_only, expect_100_continue=True
    )
    assert (taken.code, body_json(taken)["code"]) == (412, "precondition_failed")
    assert (await api.request("GET", URL)).body == DATA
    fresh = await api.upload("photos", "new.bin", b"new", headers=create_only)
    assert fresh.code == 201


async def test_racing_create_only_uploads_leave_exactly_one_winner(api: Api, stored: str) -> None:
    bodies = [os.urandom(50_000) for _ in range(8)]
    responses = await asyncio.gather(
        *(api.upload("photos", "race.bin", body, headers={"If-None-Match": "*"}) for body in bodies)
    )
    codes = sorted(r.code for r in responses)
    assert codes == [201] + [412] * 7
    winner = next(b for b, r in zip(bodies, responses, strict=True) if r.code == 201)
    assert (await api.request("GET", "/api/v1/files/photos/race.bin")).body == winner


async def test_if_match_guards_an_overwrite(api: Api, stored: str) -> None:
    stale = await api.upload("photos", "doc.bin", b"v2", headers={"If-Match": '"stale"'})
    assert stale.code == 412
    assert (await api.request("GET", URL)).body == DATA
    fresh = await api.upload("photos", "doc.bin", b"v2", headers={"If-Match": stored})
    assert fresh.code == 201
    assert (await api.request("GET", URL)).body == b"v2"
    missing = await api.upload("photos", "absent.bin", b"x", headers={"If-Match": "*"})
    assert missing.code == 412


async def test_if_match_guards_a_delete(api: Api, stored: str) -> None:
    assert (await api.request("DELETE", URL, headers={"If-Match": '"stale"'})).code == 412
    assert (await api.request("GET", URL)).code == 200
    assert (await api.request("DELETE", URL, headers={"If-Match": stored})).code == 204
    assert (await api.request("GET", URL)).code == 404
