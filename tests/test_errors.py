"""One error shape everywhere, no leaks in a 500, and hostile keys that touch nothing."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from storage_server.blobfs import BlobStore
from storage_server.fs import ops as fsops
from storage_server.store import Store
from tests.conftest import Api, body_json
from tests.stored import all_objects, contents, secrets, stored
from tests.test_blobfs import HOSTILE_BUCKETS, HOSTILE_KEYS

MULTIPART = {"Content-Type": "multipart/form-data; boundary=B"}
NO_FILE_PART = b'--B\r\nContent-Disposition: form-data; name="other"\r\n\r\nx\r\n--B--\r\n'

# (method, path, body, headers, status, code): at least one error per route and method.
ERROR_CASES: list[tuple[str, str, bytes | None, dict[str, str], int, str]] = [
    ("GET", "/api/v1/nowhere", None, {}, 404, "not_found"),
    ("GET", "/", None, {}, 404, "not_found"),
    ("DELETE", "/health", None, {}, 405, "method_not_allowed"),
    ("POST", "/api/v1/health", b"", {}, 405, "method_not_allowed"),
    ("POST", "/api/v1/buckets", b"{", {}, 422, "validation_error"),
    ("POST", "/api/v1/buckets", b'{"name": "NO"}', {}, 400, "invalid_bucket_name"),
    ("DELETE", "/api/v1/buckets", None, {}, 405, "method_not_allowed"),
    ("GET", "/api/v1/buckets/missing", None, {}, 404, "bucket_not_found"),
    ("GET", "/api/v1/buckets/Bad_Name", None, {}, 400, "invalid_bucket_name"),
    ("PATCH", "/api/v1/buckets/missing", b"{}", {}, 404, "bucket_not_found"),
    ("PATCH", "/api/v1/buckets/photos", b'{"public": 3}', {}, 422, "validation_error"),
    ("PUT", "/api/v1/buckets/photos", b'{"name": "x"}', {}, 422, "validation_error"),
    ("DELETE", "/api/v1/buckets/missing", None, {}, 404, "bucket_not_found"),
    ("POST", "/api/v1/buckets/photos", b"{}", {}, 405, "method_not_allowed"),
    ("POST", "/api/v1/files/missing/a.txt", b"x", {}, 404, "bucket_not_found"),
    ("POST", "/api/v1/files/photos/a//b", b"x", {}, 400, "invalid_key"),
    ("POST", "/api/v1/files/photos/taken/x", b"x", {}, 409, "conflict"),
    ("POST", "/api/v1/files/photos/m", NO_FILE_PART, MULTIPART, 400, "missing_file_part"),
    (
        "PUT",
        "/api/v1/files/photos/bad-type",
        b"x",
        {"Content-Type": "text/" + "x" * 300},
        400,
        "invalid_content_type",
    ),
    ("PUT", "/api/v1/files/photos/%2e%2e/x", b"x", {}, 400, "invalid_key"),
    ("GET", "/api/v1/files/photos/missing.txt", None, {}, 404, "file_not_found"),
    ("GET", "/api/v1/files/photos/%ff%fe", None, {}, 400, "bad_request"),
    ("GET", "/api/v1/files/missing/a.txt", None, {}, 404, "bucket_not_found"),
    ("DELETE", "/api/v1/files/missing/a.txt", None, {}, 404, "bucket_not_found"),
    ("DELETE", "/api/v1/files/photos/a/../b", None, {}, 400, "invalid_key"),
    ("PATCH", "/api/v1/files/photos/a.txt", b"{}", {}, 405, "method_not_allowed"),
]


@pytest.fixture
def photos(store: Store) -> str:
    store.create_bucket("photos", public=False, description=None)
    up = store.begin_upload("photos", "taken")
    up.commit(content_type="text/plain", name="taken")
    return "photos"


def assert_error_shape(response: Any, status: int, code: str, *, secrets: tuple[str, ...] = ()) -> None:
    assert response.code == status, response.body
    assert response.headers["Content-Type"] == "application/json"
    body = body_json(response)
    assert set(body) == {"detail", "code"}
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    for secret in secrets:
        assert secret not in response.body.decode()


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "code"), ERROR_CASES)
async def test_every_route_answers_errors_in_one_json_shape(
    api: Api, store: Store, photos: str, method: str, path: str, body: bytes | None,
    headers: dict[str, str], status: int, code: str,
) -> None:  # fmt: skip
    response = await api.request(method, path, body, headers=headers)
    assert_error_shape(response, status, code, secrets=secrets(store))


async def test_upload_limit_error_has_the_same_shape(api: Api, photos: str, config: Any) -> None:
    object.__setattr__(config, "max_upload_size", 1)
    assert_error_shape(await api.upload(photos, "big", b"xx"), 413, "payload_too_large")


@pytest.mark.fs_only
async def test_a_server_fault_is_500_without_internals(
    api: Api, store: BlobStore, photos: str, caplog: pytest.LogCaptureFixture
) -> None:
    os.setxattr(store.root / photos, fsops.BUCKET_XATTR, b'{"created_at": "not a date"}')
    response = await api.request("GET", f"/api/v1/buckets/{photos}")
    assert_error_shape(response, 500, "internal_error", secrets=(str(store.root), "Traceback", "not a date"))
    assert body_json(response)["detail"] == "internal server error"
    assert any(r.levelname == "ERROR" for r in caplog.records)  # the operator still sees it


@pytest.mark.fs_only
async def test_health_is_503_when_the_storage_path_is_gone(api: Api, store: BlobStore) -> None:
    os.rename(store.root, str(store.root) + ".unmounted")
    for path in ("/health", "/api/v1/health"):
        response = await api.request("GET", path)
        assert response.code == 503
        body = body_json(response)
        assert body["status"] == "unhealthy"
        assert body["code"] == "storage_unavailable"
        assert str(store.root) not in response.body.decode()


# Paths that only exist encoded: overlong UTF-8 dots and slashes, encoded backslashes, NUL.
URL_LEVEL = [
    "%c0%ae%c0%ae/abcd/x",
    "%c0%af..%c0%afabcd%c0%afx",
    "%e0%80%ae%e0%80%ae/x",
    "..%5cabcd%5cx",
    "%5c..%5cabcd",
    "%2e%2e%5c%2e%2e%5ccanary.txt",
    "x%00.txt",
    "%00",
    "%2f%2fabcd%2fx",
    "%2e%2e%2f%2e%2e%2fcanary.txt",
    "%252e%252e%252fabcd%252fx",
    "%ff%fe",
]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def encodings(text: str) -> set[str]:
    """The ways a client may put `text` in a URL path: slashes kept, all encoded, double-encoded."""
    try:
        return {
            urllib.parse.quote(text, safe="/"),
            urllib.parse.quote(text, safe=""),
            urllib.parse.quote(urllib.parse.quote(text, safe=""), safe=""),
        }
    except UnicodeEncodeError:
        return {"%ED%B3%BF"}  # a lone surrogate: send the bytes that would encode it


def hostile_targets() -> list[str]:
    """Every hostile key and bucket name, in every encoding, as paths under /api/v1/files/."""
    targets = [f"abc/{raw}" for raw in URL_LEVEL]  # already encoded as sent on the wire
    for key in [*HOSTILE_KEYS, "../abcd/x", "../canary.txt", "../../canary.txt"]:
        targets += [f"abc/{encoded}" for encoded in encodings(key)]
    for name in [*HOSTILE_BUCKETS, "..", "%2e%2e", "abcd/.."]:
        targets += [f"{encoded}/x" for encoded in encodings(name)]
    return targets


async def send_hostile(api: Api) -> list[int]:
    """PUT, GET and DELETE every hostile target; no answer may be a 5xx."""
    statuses: list[int] = []
    for target in hostile_targets():
        for method in ("PUT", "GET", "DELETE"):
            body = b"overwritten" if method == "PUT" else None
            response = await api.request(method, f"/api/v1/files/{target}", body)
            statuses.append(response.code)
            assert response.code < 500, (method, target, response.body)
    return statuses


async def test_hostile_keys_stay_inside_their_bucket(api: Api, store: Store) -> None:
    store.create_bucket("abc", public=False, description=None)
    store.create_bucket("abcd", public=False, description=None)
    await api.upload("abcd", "x", b"precious")
    statuses = await send_hostile(api)
    assert stored(store, "abcd", "x") == b"precious"
    assert contents(store, "abcd") == ["x"]
    in_abc = [key for key in contents(store, "abc") if stored(store, "abc", key) is not None]
    assert len(all_objects(store)) == len(in_abc) + 1  # nothing anywhere else
    assert statuses.count(400) > len(HOSTILE_KEYS)


@pytest.mark.fs_only
async def test_hostile_keys_and_bucket_names_touch_no_canary(
    api: Api, store: BlobStore, tmp_path: Path
) -> None:
    store.create_bucket("abc", public=False, description=None)
    store.create_bucket("abcd", public=False, description=None)
    canaries = {
        tmp_path / "canary.txt": b"above the storage path",
        store.root / "canary.txt": b"beside the buckets",
        store.root / "abcd" / "x": b"in a sibling bucket",
    }
    for path, data in canaries.items():
        path.write_bytes(data)
    before = snapshot(tmp_path)
    statuses = await send_hostile(api)
    after = snapshot(tmp_path)
    for path, data in canaries.items():
        assert path.read_bytes() == data
    # Only double-encoded names are legal keys (a literal "%2e%2e" is a plain name), and those
    # can only have landed inside bucket abc (besides the store's own lock file for it).
    new = set(after) - set(before)
    assert all(p.startswith(("data/abc/", "data/.storage-server/")) for p in new), new
    assert statuses.count(400) > len(HOSTILE_KEYS)
