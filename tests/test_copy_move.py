"""Copy, move and batch delete through the API."""

from __future__ import annotations

from typing import Any

import pytest

from storage_server.blobfs import BlobStore
from storage_server.store import Store
from tests.conftest import Api, body_json
from tests.stored import contents, stored


def transfer(src: tuple[str, str], dst: tuple[str, str]) -> dict[str, Any]:
    return {"source": {"bucket": src[0], "path": src[1]}, "destination": {"bucket": dst[0], "path": dst[1]}}


@pytest.fixture
def buckets(store: Store) -> None:
    for name in ("photos", "archive"):
        store.create_bucket(name, public=False, description=None)
    up = store.begin_upload("photos", "dir/a.txt")
    up.write(b"alpha")
    up.commit(content_type="text/plain", name="original a.txt")


@pytest.mark.parametrize("dst", [("photos", "dir/copy.txt"), ("archive", "x/y/a.txt")])
async def test_copy_keeps_the_source_and_its_metadata(
    api: Api, store: Store, buckets: None, dst: tuple[str, str]
) -> None:
    response = await api.request("POST", "/api/v1/copy", transfer(("photos", "dir/a.txt"), dst))
    assert response.code == 200, response.body
    record = body_json(response)["file"]
    assert (record["bucket"], record["path"], record["name"], record["content_type"]) == (
        *dst,
        "original a.txt",
        "text/plain",
    )
    assert stored(store, *dst) == b"alpha"
    assert stored(store, "photos", "dir/a.txt") == b"alpha"
    assert (await api.request("GET", f"/api/v1/files/{dst[0]}/{dst[1]}")).headers["ETag"] == record["etag"]


@pytest.mark.fs_only
async def test_a_move_on_the_filesystem_is_one_rename(api: Api, store: BlobStore, buckets: None) -> None:
    source_inode = (store.root / "photos" / "dir" / "a.txt").stat().st_ino
    response = await api.request(
        "POST", "/api/v1/move", transfer(("photos", "dir/a.txt"), ("archive", "b/a.txt"))
    )
    assert response.code == 200, response.body
    assert (store.root / "archive" / "b" / "a.txt").stat().st_ino == source_inode  # not a copy
    assert not (store.root / "photos" / "dir").exists()


@pytest.mark.parametrize("dst", [("photos", "moved.txt"), ("archive", "deep/moved.txt")])
async def test_move_renames_and_prunes_the_empty_source_folder(
    api: Api, store: Store, buckets: None, dst: tuple[str, str]
) -> None:
    response = await api.request("POST", "/api/v1/move", transfer(("photos", "dir/a.txt"), dst))
    assert response.code == 200, response.body
    assert stored(store, *dst) == b"alpha"
    assert contents(store, "photos") == ([dst[1]] if dst[0] == "photos" else [])
    assert (await api.request("GET", "/api/v1/files/photos/dir/a.txt")).code == 404
    assert (await api.request("GET", f"/api/v1/files/{dst[0]}/{dst[1]}")).body == b"alpha"


async def test_move_replaces_a_destination_unless_create_only(api: Api, buckets: None) -> None:
    await api.upload("archive", "b.txt", b"old")
    refused = await api.request(
        "POST",
        "/api/v1/move",
        transfer(("photos", "dir/a.txt"), ("archive", "b.txt")),
        headers={"If-None-Match": "*"},
    )
    assert (refused.code, body_json(refused)["code"]) == (412, "precondition_failed")
    assert (await api.request("GET", "/api/v1/files/photos/dir/a.txt")).code == 200
    done = await api.request("POST", "/api/v1/move", transfer(("photos", "dir/a.txt"), ("archive", "b.txt")))
    assert done.code == 200
    assert (await api.request("GET", "/api/v1/files/archive/b.txt")).body == b"alpha"


@pytest.mark.parametrize(
    ("src", "dst", "status", "code"),
    [
        (("photos", "nope.txt"), ("photos", "x.txt"), 404, "file_not_found"),
        (("nobucket", "a.txt"), ("photos", "x.txt"), 404, "bucket_not_found"),
        (("photos", "dir/a.txt"), ("nobucket", "x.txt"), 404, "bucket_not_found"),
        (("photos", "dir/a.txt"), ("photos", "dir/a.txt/under"), 409, "conflict"),
        (("photos", "dir/a.txt"), ("photos", "dir"), 409, "conflict"),
        (("photos", "../x"), ("photos", "x.txt"), 400, "invalid_key"),
        (("photos", "dir/a.txt"), ("photos", "a//b"), 400, "invalid_key"),
    ],
)
@pytest.mark.parametrize("verb", ["copy", "move"])
async def test_transfer_errors(
    api: Api, store: Store, buckets: None, verb: str, src: Any, dst: Any, status: int, code: str
) -> None:
    response = await api.request("POST", f"/api/v1/{verb}", transfer(src, dst))
    assert (response.code, body_json(response)["code"]) == (status, code)
    assert stored(store, "photos", "dir/a.txt") == b"alpha"


async def test_move_onto_itself_changes_nothing(api: Api, buckets: None) -> None:
    response = await api.request(
        "POST", "/api/v1/move", transfer(("photos", "dir/a.txt"), ("photos", "dir/a.txt"))
    )
    assert response.code == 200
    assert (await api.request("GET", "/api/v1/files/photos/dir/a.txt")).body == b"alpha"


async def test_batch_delete_reports_each_path(api: Api, store: Store, buckets: None) -> None:
    await api.upload("photos", "b.txt", b"b")
    paths = ["dir/a.txt", "b.txt", "never-existed.txt", "../escape", "a//b"]
    response = await api.request("POST", "/api/v1/buckets/photos/delete", {"paths": paths})
    assert response.code == 200
    results = body_json(response)["results"]
    assert [(r["path"], r["status"], r["code"]) for r in results] == [
        ("dir/a.txt", 204, None),
        ("b.txt", 204, None),
        ("never-existed.txt", 204, None),
        ("../escape", 400, "invalid_key"),
        ("a//b", 400, "invalid_key"),
    ]
    assert contents(store, "photos") == []


@pytest.mark.parametrize("body", [{"paths": []}, {"paths": ["x"] * 1001}, {"paths": "x"}, {}])
async def test_batch_delete_bad_bodies_are_422(api: Api, buckets: None, body: Any) -> None:
    response = await api.request("POST", "/api/v1/buckets/photos/delete", body)
    assert (response.code, body_json(response)["code"]) == (422, "validation_error")


async def test_batch_delete_in_a_missing_bucket_is_404(api: Api) -> None:
    response = await api.request("POST", "/api/v1/buckets/nothing/delete", {"paths": ["a"]})
    assert (response.code, body_json(response)["code"]) == (404, "bucket_not_found")
