"""File listings: byte order, prefixes, folders, cursors, limits."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from storage_server.store import Store
from tests.conftest import Api, body_json

KEYS = [
    "a-b.txt",
    "a/1.txt",
    "a/2.txt",
    "a/deep/x.txt",
    "a0.txt",
    "b/c/3.txt",
    "z.txt",
    "Ünï/é.txt",
    "a/é.txt",
]


def put(store: Store, key: str, data: bytes = b"x") -> None:
    up = store.begin_upload("photos", key, size=len(data))  # a declared size, as an HTTP upload has
    up.write(data)
    up.commit(content_type="text/plain", name=key.rsplit("/", 1)[-1])


@pytest.fixture
def photos(store: Store) -> str:
    store.create_bucket("photos", public=False, description=None)
    for key in KEYS:
        put(store, key)
    return "photos"


async def listing(api: Api, **query: Any) -> dict[str, Any]:
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    response = await api.request("GET", f"/api/v1/buckets/photos/files?{qs}")
    assert response.code == 200, response.body
    return dict(body_json(response))


async def test_lists_every_file_in_utf8_byte_order(api: Api, photos: str) -> None:
    page = await listing(api)
    assert [f["path"] for f in page["files"]] == sorted(KEYS, key=lambda k: k.encode())
    assert page["folders"] == []
    assert page["next_cursor"] is None
    first = page["files"][0]
    assert set(first) >= {"bucket", "path", "size", "sha256", "etag", "content_type"}


async def test_delimiter_returns_each_folder_once(api: Api, photos: str) -> None:
    page = await listing(api, delimiter="/")
    assert [f["path"] for f in page["files"]] == ["a-b.txt", "a0.txt", "z.txt"]
    assert page["folders"] == ["a/", "b/", "Ünï/"]


async def test_prefix_at_and_inside_a_segment(api: Api, photos: str) -> None:
    page = await listing(api, prefix="a/", delimiter="/")
    assert [f["path"] for f in page["files"]] == ["a/1.txt", "a/2.txt", "a/é.txt"]
    assert page["folders"] == ["a/deep/"]
    partial = await listing(api, prefix="a")
    assert [f["path"] for f in partial["files"]] == [
        "a-b.txt",
        "a/1.txt",
        "a/2.txt",
        "a/deep/x.txt",
        "a/é.txt",
        "a0.txt",
    ]
    assert (await listing(api, prefix="a/2"))["files"][0]["path"] == "a/2.txt"


@pytest.mark.parametrize("prefix", ["nothing/", "a/../", "a//", "%00"])
async def test_a_prefix_no_key_can_have_lists_nothing(api: Api, photos: str, prefix: str) -> None:
    page = await listing(api, prefix=prefix)
    assert (page["files"], page["folders"], page["next_cursor"]) == ([], [], None)


async def test_pages_follow_the_cursor_without_gaps_or_repeats(api: Api, photos: str) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        query: dict[str, Any] = {"limit": 2, "delimiter": "/"}
        if cursor:
            query["cursor"] = cursor
        page = await listing(api, **query)
        seen += [f["path"] for f in page["files"]] + page["folders"]
        assert len(page["files"]) + len(page["folders"]) <= 2
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen, key=lambda k: k.encode()) == ["a-b.txt", "a/", "a0.txt", "b/", "z.txt", "Ünï/"]
    assert len(seen) == len(set(seen))


@pytest.mark.timeout(seconds=180)  # 2,500 uploads to a SeaweedFS on the same two cores
async def test_paging_through_2500_files(api: Api, store: Store, photos: str) -> None:
    with ThreadPoolExecutor(8) as pool:  # an object store takes them faster side by side
        list(pool.map(lambda i: put(store, f"many/{i % 7}/{i:05d}", b""), range(2500)))
    paths: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await listing(api, prefix="many/", limit=1000, **({"cursor": cursor} if cursor else {}))
        paths += [f["path"] for f in page["files"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert paths == sorted(paths, key=lambda k: k.encode())
    assert len(paths) == len(set(paths)) == 2500


async def test_files_added_after_the_cursor_show_up_on_later_pages(
    api: Api, store: Store, photos: str
) -> None:
    first = await listing(api, limit=3)
    put(store, "zz-late.txt")
    rest = await listing(api, cursor=first["next_cursor"])
    assert "zz-late.txt" in [f["path"] for f in rest["files"]]


@pytest.mark.parametrize(
    "query", ["limit=0", "limit=10001", "limit=abc", "delimiter=|", "cursor=xyz", "cursor=", "x=1"]
)
async def test_bad_queries_are_422(api: Api, photos: str, query: str) -> None:
    response = await api.request("GET", f"/api/v1/buckets/photos/files?{query}")
    assert (response.code, body_json(response)["code"]) == (422, "validation_error")


async def test_listing_a_missing_bucket_is_404(api: Api) -> None:
    response = await api.request("GET", "/api/v1/buckets/nothing/files")
    assert (response.code, body_json(response)["code"]) == (404, "bucket_not_found")


@pytest.mark.fs_only
async def test_symlinks_and_internal_names_are_not_listed(
    api: Api, store: Store, photos: str, tmp_path: Any
) -> None:
    os.symlink("/etc", store.root / "photos" / "etc-link")
    os.symlink(store.root / "photos" / "z.txt", store.root / "photos" / "file-link")
    paths = [f["path"] for f in (await listing(api))["files"]]
    assert "etc-link" not in str(paths)
    assert "file-link" not in paths
