"""Access control through the native API, on both backends: the route-by-key matrix walked from
the access table, signed URLs (each part tampered, expiry on an injected clock, removed keys),
public buckets, and the per-bucket limits on every way in, with what was stored checked."""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from tornado.httpserver import HTTPServer
from tornado.web import Application

from storage_server.auth.keyring import Keyring
from storage_server.handlers import ACCESS, ROUTES
from storage_server.settings import Settings
from storage_server.store import Store
from tests.conftest import Api, body_json
from tests.stored import stored

SECRETS = {
    "reader": "read-secret-0123456789",
    "writer": "write-secret-0123456789",
    "admin": "admin-secret-0123456789",
    "elsewhere": "other-secret-0123456789",  # admin, but only of the bucket "other"
}
KEYS = f"""
[[keys]]
id = "reader"
secret = "{SECRETS["reader"]}"
access = "read"

[[keys]]
id = "writer"
secret = "{SECRETS["writer"]}"
access = "write"

[[keys]]
id = "admin"
secret = "{SECRETS["admin"]}"
access = "admin"
buckets = ["*"]

[[keys]]
id = "elsewhere"
secret = "{SECRETS["elsewhere"]}"
access = "admin"
buckets = ["other"]
"""
LEVEL = {"reader": 1, "writer": 2, "admin": 3, "elsewhere": 3}
API = "/api/v1"
FILE = f"{API}/files/{{bucket}}/{{path}}"
TUS_CREATE = f"{API}/upload/resumable"
TUS_UPLOAD = f"{API}/upload/resumable/{{id}}"
TUS = {"Tus-Resumable": "1.0.0"}
TUS_METADATA = "bucketName cGhvdG9z,objectName dC5iaW4="  # photos, t.bin

# The matrix: what each route and method needs (1 read, 2 write, 3 admin, None open) and whether
# the key must cover the bucket it acts on. A route or method missing here fails the walk.
EXPECTED: dict[tuple[str, str], tuple[int | None, bool]] = {
    ("/health", "GET"): (None, False),
    (f"{API}/health", "GET"): (None, False),
    (f"{API}/buckets", "GET"): (1, False),
    (f"{API}/buckets", "POST"): (3, True),
    (f"{API}/buckets/{{bucket}}", "GET"): (1, True),
    (f"{API}/buckets/{{bucket}}", "PATCH"): (3, True),
    (f"{API}/buckets/{{bucket}}", "PUT"): (3, True),
    (f"{API}/buckets/{{bucket}}", "DELETE"): (3, True),
    (f"{API}/buckets/{{bucket}}/files", "GET"): (1, True),
    (f"{API}/buckets/{{bucket}}/delete", "POST"): (2, True),
    (FILE, "GET"): (1, True),
    (FILE, "HEAD"): (1, True),
    (FILE, "POST"): (2, True),
    (FILE, "PUT"): (2, True),
    (FILE, "DELETE"): (2, True),
    (f"{API}/sign/{{bucket}}/{{path}}", "POST"): (1, True),
    (f"{API}/copy", "POST"): (2, True),
    (f"{API}/damaged", "GET"): (3, False),
    (f"{API}/move", "POST"): (2, True),
    ("/openapi.json", "GET"): (None, False),
    ("/metrics", "GET"): (1, False),
    ("/docs", "GET"): (None, False),
    (TUS_CREATE, "POST"): (2, True),
    (TUS_UPLOAD, "HEAD"): (2, True),
    (TUS_UPLOAD, "PATCH"): (2, True),
    (TUS_UPLOAD, "DELETE"): (2, True),
}
# Headers a route needs to get past its own checks to the access check.
HEADERS: dict[tuple[str, str], dict[str, str]] = {
    (TUS_CREATE, "POST"): {**TUS, "Upload-Length": "10", "Upload-Metadata": TUS_METADATA},
    (TUS_UPLOAD, "HEAD"): TUS,
    (TUS_UPLOAD, "PATCH"): {**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"},
    (TUS_UPLOAD, "DELETE"): TUS,
}
TRANSFER = {
    "source": {"bucket": "photos", "path": "a.txt"},
    "destination": {"bucket": "photos", "path": "b.txt"},
}
BODIES: dict[tuple[str, str], Any] = {
    (f"{API}/buckets", "POST"): {"name": "photos"},
    (f"{API}/buckets/{{bucket}}", "PATCH"): {"description": "d"},
    (f"{API}/buckets/{{bucket}}", "PUT"): {"description": "d"},
    (f"{API}/buckets/{{bucket}}/delete", "POST"): {"paths": ["a.txt"]},
    (FILE, "POST"): b"new bytes",
    (FILE, "PUT"): b"new bytes",
    (f"{API}/sign/{{bucket}}/{{path}}", "POST"): {"method": "GET", "expires_in": 60},
    (f"{API}/copy", "POST"): TRANSFER,
    (f"{API}/move", "POST"): TRANSFER,
    (TUS_UPLOAD, "PATCH"): b"0123",
}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(KEYS)
    os.chmod(path, 0o600)
    return path


@pytest.fixture
def config(config: Settings, keys_file: Path) -> Settings:
    return config.model_copy(update={"keys_file": keys_file})


@pytest.fixture
def app(http_server: HTTPServer) -> Application:
    application = http_server.request_callback
    assert isinstance(application, Application)
    return application


@pytest.fixture
def clock(app: Application) -> Clock:
    clock = Clock()
    app.settings["clock"] = clock
    return clock


@pytest.fixture
def photos(store: Store) -> str:
    store.create_bucket("photos")
    store.create_bucket("other")
    upload = store.begin_upload("photos", "a.txt")
    upload.write(b"stored bytes")
    upload.commit(content_type="text/plain", name="a.txt")
    return "photos"


def as_key(name: str | None, headers: dict[str, str] | None = None) -> dict[str, str]:
    headers = dict(headers or {})
    if name == "unknown":
        headers["X-API-Key"] = "not-a-key-of-this-service"
    elif name is not None:
        headers["X-API-Key"] = SECRETS[name]
    return headers


async def send(
    api: Api, method: str, url: str, body: Any = None, key: str | None = None, **extra: str
) -> Any:
    headers = as_key(key, {"Content-Type": "application/json"} if isinstance(body, dict) else {})
    return await api.request(method, url, body, headers={**headers, **extra})


async def tus_upload(api: Api, key: str = "admin", metadata: str = TUS_METADATA) -> str:
    """A new tus upload's URL (into photos, unless `metadata` says otherwise)."""
    headers = {**TUS, "Upload-Length": "10", "Upload-Metadata": metadata}
    response = await send(api, "POST", TUS_CREATE, b"", key, **headers)
    assert response.code == 201, response.body
    url: str = response.headers["Location"]
    return url


def test_the_matrix_covers_every_route_and_method() -> None:
    served = {(t, m) for t, h in ROUTES for m in h.allowed_methods()}
    assert set(EXPECTED) == served
    assert {(t, m) for t, rules in ACCESS.items() for m in rules} == served


@pytest.mark.parametrize(("route", "method"), sorted(EXPECTED))
async def test_each_route_admits_exactly_the_keys_it_should(
    api: Api, photos: str, route: str, method: str
) -> None:
    need, scoped = EXPECTED[(route, method)]
    url = route.replace("{bucket}", photos).replace("{path}", "a.txt")
    body = BODIES.get((route, method))
    headers = HEADERS.get((route, method), {})
    for key in (None, "unknown", "reader", "writer", "admin", "elsewhere"):
        if "{id}" in route:
            url = await tus_upload(api)  # a fresh one each time: a DELETE or PATCH uses it up
        response = await send(api, method, url, body, key, **headers)
        if need is None:
            allowed = True
        elif key in (None, "unknown"):
            assert response.code == 401, (key, response.body)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            continue
        else:
            assert key is not None
            allowed = LEVEL[key] >= need and not (scoped and key == "elsewhere")
        if allowed:
            assert response.code not in (401, 403), (key, response.code, response.body)
        else:
            assert response.code == 403, (key, response.code, response.body)
            if method != "HEAD":
                assert body_json(response)["code"] == "forbidden"


async def test_a_key_scoped_to_one_bucket_lists_only_that_bucket(api: Api, photos: str) -> None:
    listed = await send(api, "GET", f"{API}/buckets", key="elsewhere")
    assert [b["name"] for b in body_json(listed)] == ["other"]
    everything = await send(api, "GET", f"{API}/buckets", key="reader")
    assert [b["name"] for b in body_json(everything)] == ["other", "photos"]


async def test_bearer_authorization_works_like_x_api_key(api: Api, photos: str) -> None:
    url = f"{API}/files/{photos}/a.txt"
    good = await api.request("GET", url, headers={"Authorization": f"Bearer {SECRETS['reader']}"})
    assert (good.code, good.body) == (200, b"stored bytes")
    other_scheme = await api.request("GET", url, headers={"Authorization": f"Basic {SECRETS['reader']}"})
    assert other_scheme.code == 401


async def sign(api: Api, key: str, method: str, path: str, expires_in: int = 60, upsert: bool = False) -> str:
    body = {"method": method, "expires_in": expires_in, "upsert": upsert}
    response = await send(api, "POST", f"{API}/sign/photos/{path}", body, key)
    assert response.code == 200, response.body
    url: str = body_json(response)["url"]
    return url


async def test_a_signed_get_url_serves_get_head_and_ranges_without_a_key(
    api: Api, photos: str, clock: Clock
) -> None:
    url = await sign(api, "reader", "GET", "a.txt")
    assert (await api.request("GET", url)).body == b"stored bytes"
    assert (await api.request("HEAD", url)).code == 200
    ranged = await api.request("GET", url, headers={"Range": "bytes=0-5"})
    assert (ranged.code, ranged.body) == (206, b"stored")
    assert (await api.request("PUT", url, b"x")).code == 403  # a GET URL does not upload
    assert (await api.request("DELETE", url)).code == 401  # nor delete


async def test_a_signed_put_url_uploads_once_and_upsert_replaces(
    api: Api, store: Store, photos: str, clock: Clock
) -> None:
    url = await sign(api, "writer", "PUT", "new/b.bin")
    assert (await api.request("PUT", url, b"first")).code == 201
    again = await api.request("PUT", url, b"second")
    assert (again.code, body_json(again)["code"]) == (412, "precondition_failed")
    assert stored(store, photos, "new/b.bin") == b"first"
    upsert = await sign(api, "writer", "PUT", "new/b.bin", upsert=True)
    form = b'--xx\r\nContent-Disposition: form-data; name="file"; filename="b.bin"\r\n\r\nthird\r\n--xx--\r\n'
    posted = await api.request(
        "POST", upsert, form, headers={"Content-Type": "multipart/form-data; boundary=xx"}
    )
    assert posted.code == 201, posted.body
    assert stored(store, photos, "new/b.bin") == b"third"
    assert (await api.request("GET", url)).code == 403  # a PUT URL does not read


async def test_a_read_key_cannot_sign_uploads(api: Api, photos: str) -> None:
    body = {"method": "PUT", "expires_in": 60}
    response = await send(api, "POST", f"{API}/sign/photos/a.txt", body, "reader")
    assert response.code == 403


def tampered(url: str, name: str, value: str) -> str:
    path, _, query = url.partition("?")
    params = dict(urllib.parse.parse_qsl(query))
    params[name] = value
    return f"{path}?{urllib.parse.urlencode(params)}"


async def test_any_change_to_a_signed_url_is_refused_without_saying_what(
    api: Api, photos: str, clock: Clock
) -> None:
    url = await sign(api, "reader", "GET", "a.txt")
    params = dict(urllib.parse.parse_qsl(url.partition("?")[2]))
    variants = [
        tampered(url, "X-Sign-Method", "PUT"),
        tampered(url, "X-Sign-Expires", str(int(params["X-Sign-Expires"]) + 3600)),
        tampered(url, "X-Sign-Key", "writer"),
        tampered(url, "X-Sign-Upsert", "1"),
        tampered(url, "X-Sign-Signature", "0" * 64),
        url.replace("/a.txt?", "/b.txt?"),  # another path
        url.replace("/photos/", "/other/"),  # another bucket
    ]
    for variant in variants:
        response = await api.request("GET", variant)
        assert (response.code, body_json(response)) == (
            403,
            {"detail": "the signed URL does not hold", "code": "signature_invalid"},
        ), variant


async def test_an_expired_signed_url_is_refused(api: Api, photos: str, clock: Clock) -> None:
    url = await sign(api, "reader", "GET", "a.txt", expires_in=60)
    clock.now += 60
    assert (await api.request("GET", url)).code == 200
    clock.now += 1.5
    response = await api.request("GET", url)
    assert (response.code, body_json(response)["code"]) == (403, "signature_expired")


async def test_removing_a_key_revokes_the_urls_it_signed(
    api: Api, app: Application, photos: str, clock: Clock, tmp_path: Path
) -> None:
    url = await sign(api, "reader", "GET", "a.txt")
    smaller = tmp_path / "fewer.toml"
    smaller.write_text(KEYS.split('[[keys]]\nid = "writer"')[0].replace('id = "reader"', 'id = "reader2"'))
    os.chmod(smaller, 0o600)
    app.settings["keyring"] = Keyring.load(smaller)
    response = await api.request("GET", url)
    assert (response.code, body_json(response)["code"]) == (403, "signature_invalid")


async def test_public_bucket_files_need_no_key_but_nothing_else_is_open(
    api: Api, store: Store, photos: str
) -> None:
    url = f"{API}/files/{photos}/a.txt"
    private = await api.request("GET", url)
    missing = await api.request("GET", f"{API}/files/{photos}/nothing-here.txt")
    no_bucket = await api.request("GET", f"{API}/files/no-such-bucket/a.txt")
    assert private.code == missing.code == no_bucket.code == 401
    assert private.body == missing.body == no_bucket.body  # the same answer, file or not
    made_public = await send(api, "PATCH", f"{API}/buckets/{photos}", {"public": True}, "admin")
    assert made_public.code == 200
    assert (await api.request("GET", url)).body == b"stored bytes"
    assert (await api.request("HEAD", url)).code == 200
    assert (await api.request("GET", f"{API}/files/{photos}/nothing-here.txt")).code == 404
    assert (await api.request("GET", f"{API}/buckets/{photos}/files")).code == 401
    assert (await api.request("PUT", url, b"overwrite")).code == 401
    assert (await api.request("DELETE", url)).code == 401
    assert stored(store, photos, "a.txt") == b"stored bytes"


async def make_limited(api: Api) -> None:
    body = {"name": "limited", "file_size_limit": 10, "allowed_mime_types": ["image/*", "text/csv"]}
    response = await send(api, "POST", f"{API}/buckets", body, "admin")
    assert response.code == 201, response.body
    assert (body_json(response)["file_size_limit"], body_json(response)["allowed_mime_types"]) == (
        10,
        ["image/*", "text/csv"],
    )


async def upload(api: Api, path: str, data: bytes, content_type: str, **headers: str) -> Any:
    headers = {"Content-Type": content_type, **as_key("writer"), **headers}
    return await api.request("PUT", f"{API}/files/limited/{path}", data, headers=headers)


async def test_bucket_limits_refuse_large_or_unlisted_files_and_keep_the_old_version(
    api: Api, store: Store, photos: str
) -> None:
    await make_limited(api)
    assert (await upload(api, "ok.png", b"0123456789", "image/png")).code == 201
    too_big = await upload(api, "ok.png", b"0123456789A", "image/png")
    assert (too_big.code, body_json(too_big)["code"]) == (413, "payload_too_large")
    wrong_type = await upload(api, "ok.png", b"tiny", "text/plain")
    assert (wrong_type.code, body_json(wrong_type)["code"]) == (415, "mime_type_not_allowed")
    guessed = await upload(api, "notes.txt", b"tiny", "application/octet-stream")  # text/plain by name
    assert guessed.code == 415
    assert (await upload(api, "t.csv", b"a,b", "text/csv; charset=utf-8")).code == 201
    assert stored(store, "limited", "ok.png") == b"0123456789"
    assert stored(store, "limited", "notes.txt") is None


async def test_a_body_growing_past_the_limit_is_refused_as_soon_as_it_does(
    api: Api, store: Store, photos: str
) -> None:
    await make_limited(api)

    async def chunks(write: Any) -> None:
        for _ in range(4):
            await write(b"abcd")

    response = await api.request(
        "PUT",
        f"{API}/files/limited/grow.png",
        body_producer=chunks,
        headers={"Content-Type": "image/png", **as_key("writer")},
    )
    assert response.code == 413
    assert stored(store, "limited", "grow.png") is None


async def test_limits_hold_for_copies_moves_and_signed_uploads(api: Api, store: Store, photos: str) -> None:
    await make_limited(api)
    for verb in ("copy", "move"):
        body = {
            "source": {"bucket": "photos", "path": "a.txt"},
            "destination": {"bucket": "limited", "path": "a.txt"},
        }
        response = await send(api, "POST", f"{API}/{verb}", body, "admin")
        assert response.code == 413, response.body  # 12 bytes: over the limit before the type
    assert stored(store, photos, "a.txt") == b"stored bytes"  # the move left its source
    assert stored(store, "limited", "a.txt") is None
    signed = await send(
        api, "POST", f"{API}/sign/limited/s.png", {"method": "PUT", "expires_in": 60}, "writer"
    )
    url = body_json(signed)["url"]
    response = await api.request("PUT", url, b"far too many bytes", headers={"Content-Type": "image/png"})
    assert response.code == 413
    assert stored(store, "limited", "s.png") is None


async def test_limits_can_be_changed_and_cleared(api: Api, photos: str) -> None:
    await make_limited(api)
    cleared = await send(
        api, "PATCH", f"{API}/buckets/limited", {"file_size_limit": None, "allowed_mime_types": None}, "admin"
    )
    assert (body_json(cleared)["file_size_limit"], body_json(cleared)["allowed_mime_types"]) == (None, None)
    assert (await upload(api, "big.txt", b"x" * 100, "text/plain")).code == 201
    bad = await send(api, "PATCH", f"{API}/buckets/limited", {"allowed_mime_types": ["not a type"]}, "admin")
    assert bad.code == 422


async def test_cors_preflight_and_headers_for_allowed_origins_only(
    api: Api, app: Application, photos: str, config: Settings
) -> None:
    origin = "http://app.example"
    allowed = config.model_copy(update={"cors_origins": [origin]})
    for rule in app.wildcard_router.rules:
        if "config" in rule.target_kwargs:
            rule.target_kwargs["config"] = allowed
    url = f"{API}/files/{photos}/a.txt"
    preflight = await api.request(
        "OPTIONS",
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "x-api-key",
        },
    )
    assert preflight.code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == origin
    assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]
    assert "X-API-Key" in preflight.headers["Access-Control-Allow-Headers"]
    got = await api.request("GET", url, headers={"Origin": origin, **as_key("reader")})
    assert got.headers["Access-Control-Allow-Origin"] == origin
    assert "ETag" in got.headers["Access-Control-Expose-Headers"]
    refused = await api.request("GET", url, headers={"Origin": origin})  # errors carry CORS too
    assert (refused.code, refused.headers["Access-Control-Allow-Origin"]) == (401, origin)
    stranger = await api.request("GET", url, headers={"Origin": "http://evil.example", **as_key("reader")})
    assert "Access-Control-Allow-Origin" not in stranger.headers
    no_preflight = await api.request(
        "OPTIONS", url, headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "PUT"}
    )
    assert no_preflight.code == 405


async def test_the_openapi_document_declares_the_key_schemes(api: Api) -> None:
    document = json.loads((await api.request("GET", "/openapi.json")).body)
    assert set(document["components"]["securitySchemes"]) == {"ApiKey", "Bearer"}
    assert document["paths"]["/health"]["get"]["security"] == []
    assert "security" not in document["paths"][f"{API}/buckets"]["get"]
    assert "401" in document["paths"][f"{API}/buckets"]["get"]["responses"]


async def test_a_tus_upload_goes_on_only_with_a_key_of_its_bucket(
    api: Api, store: Store, photos: str
) -> None:
    url = await tus_upload(api, "writer")
    patch = {**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    stranger = await send(api, "PATCH", url, b"0123456789", "elsewhere", **patch)
    assert (stranger.code, body_json(stranger)["code"]) == (403, "forbidden")
    assert (await send(api, "HEAD", url, None, "elsewhere", **TUS)).code == 403
    assert (await send(api, "DELETE", url, None, "elsewhere", **TUS)).code == 403
    assert (await send(api, "HEAD", url, None, "writer", **TUS)).headers["Upload-Offset"] == "0"
    into_other = await send(
        api,
        "POST",
        TUS_CREATE,
        b"",
        "writer",
        **{**TUS, "Upload-Length": "1", "Upload-Metadata": TUS_METADATA},
    )
    assert into_other.code == 201  # a writer of every bucket
    assert stored(store, photos, "t.bin") is None


async def test_a_signed_put_url_creates_and_continues_a_tus_upload_of_that_file_only(
    api: Api, store: Store, photos: str, clock: Clock
) -> None:
    signed = await sign(api, "writer", "PUT", "t.bin")
    query = signed.partition("?")[2]
    create = {**TUS, "Upload-Length": "4", "Upload-Metadata": TUS_METADATA}
    elsewhere = await api.request(
        "POST",
        f"{TUS_CREATE}?{query}",
        b"",
        headers={**create, "Upload-Metadata": "bucketName cGhvdG9z,objectName b3RoZXI="},
    )
    assert (elsewhere.code, body_json(elsewhere)["code"]) == (403, "signature_invalid")
    created = await api.request("POST", f"{TUS_CREATE}?{query}", b"", headers=create)
    assert created.code == 201, created.body
    url = created.headers["Location"]
    assert "X-Sign-Signature=" in url
    bare = url.partition("?")[0]
    patch = {**TUS, "Content-Type": "application/offset+octet-stream", "Upload-Offset": "0"}
    assert (await api.request("PATCH", bare, b"ab", headers=patch)).code == 401
    assert (await api.request("PATCH", url, b"ab", headers=patch)).code == 204
    patch["Upload-Offset"] = "2"
    assert (await api.request("PATCH", url, b"cd", headers=patch)).code == 204
    assert stored(store, photos, "t.bin") == b"abcd"
    get_url = await sign(api, "reader", "GET", "t.bin")
    refused = await api.request("POST", f"{TUS_CREATE}?{get_url.partition('?')[2]}", b"", headers=create)
    assert refused.code == 403
