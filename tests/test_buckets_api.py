"""Bucket routes through a real server: create, list, get, update, delete."""

from __future__ import annotations

import pytest

from storage_server.store import Store
from tests.conftest import Api, body_json
from tests.stored import all_objects

BUCKET_FIELDS = {
    "name",
    "public",
    "description",
    "file_size_limit",
    "allowed_mime_types",
    "created_at",
    "updated_at",
    "file_count",
    "total_size",
}


async def test_create_bucket_returns_201_with_the_bucket(api: Api) -> None:
    response = await api.request(
        "POST", "/api/v1/buckets", {"name": "photos", "public": True, "description": "d"}
    )
    assert response.code == 201
    assert response.headers["Content-Type"] == "application/json"
    bucket = body_json(response)
    assert set(bucket) == BUCKET_FIELDS
    assert (bucket["name"], bucket["public"], bucket["description"]) == ("photos", True, "d")
    assert bucket["created_at"].endswith("Z")


async def test_create_bucket_defaults_to_private_without_description(api: Api) -> None:
    bucket = await api.create_bucket("photos")
    assert (bucket["public"], bucket["description"]) == (False, None)


async def test_creating_an_existing_bucket_returns_200_and_leaves_it_untouched(api: Api) -> None:
    first = await api.create_bucket("photos", public=True, description="keep")
    await api.upload("photos", "a.txt", b"contents")
    response = await api.request("POST", "/api/v1/buckets", {"name": "photos", "public": False})
    assert response.code == 200
    assert body_json(response) == {**first, "file_count": 1, "total_size": 8}
    assert (await api.request("GET", "/api/v1/files/photos/a.txt")).body == b"contents"


async def test_list_buckets_is_a_bare_array_sorted_by_name(api: Api) -> None:
    for name in ("zeta", "alpha", "mid-1"):
        await api.create_bucket(name)
    response = await api.request("GET", "/api/v1/buckets")
    assert response.code == 200
    listed = body_json(response)
    assert [b["name"] for b in listed] == ["alpha", "mid-1", "zeta"]
    assert all(set(b) == BUCKET_FIELDS for b in listed)


async def test_list_buckets_is_empty_at_first(api: Api) -> None:
    assert body_json(await api.request("GET", "/api/v1/buckets")) == []


async def test_get_bucket(api: Api) -> None:
    created = await api.create_bucket("photos")
    response = await api.request("GET", "/api/v1/buckets/photos")
    assert response.code == 200
    assert body_json(response) == created


async def test_get_missing_bucket_returns_404(api: Api) -> None:
    response = await api.request("GET", "/api/v1/buckets/nothing")
    assert response.code == 404
    assert body_json(response)["code"] == "bucket_not_found"


@pytest.mark.parametrize("method", ["PATCH", "PUT"])
async def test_update_bucket_persists_and_keeps_created_at(api: Api, method: str) -> None:
    created = await api.create_bucket("photos")
    response = await api.request(method, "/api/v1/buckets/photos", {"public": True, "description": "new"})
    assert response.code == 200
    updated = body_json(response)
    assert (updated["public"], updated["description"]) == (True, "new")
    assert updated["created_at"] == created["created_at"]
    assert updated["updated_at"] > created["updated_at"]
    assert body_json(await api.request("GET", "/api/v1/buckets/photos")) == updated


async def test_update_changes_only_the_fields_sent(api: Api) -> None:
    await api.create_bucket("photos", public=True, description="keep me")
    updated = body_json(await api.request("PATCH", "/api/v1/buckets/photos", {"public": False}))
    assert (updated["public"], updated["description"]) == (False, "keep me")
    cleared = body_json(await api.request("PATCH", "/api/v1/buckets/photos", {"description": None}))
    assert (cleared["public"], cleared["description"]) == (False, None)


async def test_update_missing_bucket_returns_404(api: Api) -> None:
    response = await api.request("PATCH", "/api/v1/buckets/nothing", {"public": True})
    assert response.code == 404


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[]",
        b'{"public": "yes"}',
        b'{"public": null}',
        b'{"unknown": 1}',
        b'{"description": 5}',
    ],
)
async def test_update_with_a_bad_body_returns_422_and_changes_nothing(api: Api, body: bytes) -> None:
    created = await api.create_bucket("photos")
    response = await api.request("PATCH", "/api/v1/buckets/photos", body)
    assert response.code == 422
    assert body_json(response)["code"] == "validation_error"
    assert body_json(await api.request("GET", "/api/v1/buckets/photos")) == created


@pytest.mark.parametrize(
    "body",
    [b"{}", b"nope", b'{"name": 5}', b'{"name": "photos", "public": "true"}', b'{"name": "photos", "x": 1}'],
)
async def test_create_with_a_bad_body_returns_422(api: Api, body: bytes) -> None:
    response = await api.request("POST", "/api/v1/buckets", body)
    assert response.code == 422
    assert body_json(response)["code"] == "validation_error"
    assert body_json(await api.request("GET", "/api/v1/buckets")) == []


@pytest.mark.parametrize("name", ["ab", "UPPER", "abc\n", "-abc", "a_b", "a" * 64, ".storage-server", "a.b"])
async def test_create_with_an_invalid_name_returns_400(api: Api, name: str) -> None:
    response = await api.request("POST", "/api/v1/buckets", {"name": name})
    assert response.code == 400
    assert body_json(response)["code"] == "invalid_bucket_name"
    assert body_json(await api.request("GET", "/api/v1/buckets")) == []


async def test_delete_bucket_removes_every_file(api: Api, store: Store) -> None:
    await api.create_bucket("photos")
    for key in ("a.txt", "deep/er/b.txt"):
        assert (await api.upload("photos", key, b"x")).code == 201
    response = await api.request("DELETE", "/api/v1/buckets/photos")
    assert response.code == 204
    assert response.body == b""
    assert all_objects(store) == []
    assert (await api.request("GET", "/api/v1/buckets/photos")).code == 404
    assert (await api.request("GET", "/api/v1/files/photos/a.txt")).code == 404


async def test_delete_missing_bucket_returns_404(api: Api) -> None:
    response = await api.request("DELETE", "/api/v1/buckets/nothing")
    assert response.code == 404
    assert body_json(response)["code"] == "bucket_not_found"


async def test_a_deleted_bucket_can_be_created_again_empty(api: Api) -> None:
    await api.create_bucket("photos")
    await api.upload("photos", "a.txt", b"x")
    await api.request("DELETE", "/api/v1/buckets/photos")
    response = await api.request("POST", "/api/v1/buckets", {"name": "photos"})
    assert response.code == 201
    assert (await api.request("GET", "/api/v1/files/photos/a.txt")).code == 404


async def test_health_on_both_paths(api: Api) -> None:
    for path in ("/health", "/api/v1/health"):
        response = await api.request("GET", path)
        assert response.code == 200
        assert body_json(response)["status"] == "healthy"
        assert body_json(response)["version"]
