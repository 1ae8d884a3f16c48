"""Malformed HTTP framing gets a 400 or a closed connection, never a 5xx, and the service stays
healthy afterwards."""

from __future__ import annotations

import asyncio
import urllib.parse

import pytest

from storage_server.blobfs import BlobStore
from tests.conftest import Api

PUT = b"PUT /api/v1/files/photos/a HTTP/1.1\r\nHost: x\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"
BAD_REQUESTS = {
    "content-length and transfer-encoding": PUT
    + b"Content-Length: 5\r\n"
    + CHUNKED
    + b"\r\n5\r\nhello\r\n0\r\n\r\n",
    "duplicate transfer-encoding": PUT + CHUNKED + CHUNKED + b"\r\n5\r\nhello\r\n0\r\n\r\n",
    "transfer-encoding gzip, chunked": PUT + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "plus-signed content-length": PUT + b"Content-Length: +3\r\n\r\nabc",
    "negative content-length": PUT + b"Content-Length: -3\r\n\r\nabc",
    "two content-lengths": PUT + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "hex content-length": PUT + b"Content-Length: 0x3\r\n\r\nabc",
    "non-ascii digit in content-length": PUT + b"Content-Length: 1\xb2\r\n\r\nabc",
    "only a non-ascii digit as content-length": PUT + b"Content-Length: \xb2\r\n\r\nabc",
    "bad chunk size": PUT + CHUNKED + b"\r\nzz\r\nab\r\n",
    "chunked without the final chunk": PUT + CHUNKED + b"\r\n5\r\nhello\r\n",
    "oversized header": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n",
    "too many headers": b"GET /health HTTP/1.1\r\n"
    + b"".join(b"X-%d: y\r\n" % i for i in range(5000))
    + b"\r\n",
    "bare LF and junk start line": b"GARBAGE\n\n",
    "http/0.9 style": b"GET /health\r\n\r\n",
    "nul in the path": b"GET /api/v1/files/photos/a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
    "space in the path": b"GET /api/v1/files/photos/a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "header without colon": b"GET /health HTTP/1.1\r\nHost x\r\n\r\n",
    "obsolete line folding": b"GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
}


@pytest.fixture
def photos(store: BlobStore) -> str:
    store.create_bucket("photos", public=False, description=None)
    return "photos"


async def exchange(api: Api, raw: bytes) -> bytes:
    port = urllib.parse.urlsplit(api.url("/")).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(raw)
        await writer.drain()
        writer.write_eof()
    except (ConnectionError, OSError):
        pass
    try:
        return await asyncio.wait_for(reader.read(), 5)
    except (ConnectionError, TimeoutError):
        return b""
    finally:
        writer.close()


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
async def test_bad_framing_is_400_or_closed_never_5xx(
    api: Api, store: BlobStore, photos: str, name: str
) -> None:
    answer = await exchange(api, BAD_REQUESTS[name])
    status_line = answer.split(b"\r\n", 1)[0]
    print(name, "->", status_line or b"closed")
    assert not status_line.startswith((b"HTTP/1.1 5", b"HTTP/1.0 5")), (name, answer[:300])
    if status_line:
        assert status_line.split()[1] in (b"400", b"404", b"405", b"411", b"413", b"431", b"505"), status_line
    health = await api.request("GET", "/health")
    assert health.code == 200
    # nothing half-stored from a body whose framing was wrong
    got = await api.request("GET", f"/api/v1/files/{photos}/a")
    assert got.code in (200, 404)
    if got.code == 200:
        assert got.body in (b"hello", b"abc", b"")
