"""Bucket stats (file_count, total_size): exact after every kind of change, under concurrency, and
after a worker dies between a change and its counter update."""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from storage_server import blobfs
from storage_server.store import Store
from tests.conftest import Api, body_json
from tests.stored import walked


async def stats(api: Api, bucket: str = "photos") -> tuple[int, int]:
    bucket_json = body_json(await api.request("GET", f"/api/v1/buckets/{bucket}"))
    return bucket_json["file_count"], bucket_json["total_size"]


async def transfer(api: Api, verb: str, src: tuple[str, str], dst: tuple[str, str]) -> None:
    body = {"source": {"bucket": src[0], "path": src[1]}, "destination": {"bucket": dst[0], "path": dst[1]}}
    assert (await api.request("POST", f"/api/v1/{verb}", body)).code == 200


@pytest.fixture
def photos(store: Store) -> str:
    store.create_bucket("photos", public=False, description=None)
    store.create_bucket("other", public=False, description=None)
    return "photos"


async def test_stats_follow_uploads_overwrites_deletes_copies_and_moves(
    api: Api, store: Store, photos: str
) -> None:
    assert await stats(api) == (0, 0)
    await api.upload(photos, "a.bin", b"x" * 100)
    await api.upload(photos, "d/b.bin", b"x" * 50)
    assert await stats(api) == (2, 150)
    await api.upload(photos, "a.bin", b"x" * 10)  # overwrite
    assert await stats(api) == (2, 60)
    await transfer(api, "copy", (photos, "a.bin"), (photos, "c.bin"))
    assert await stats(api) == (3, 70)
    await transfer(api, "move", (photos, "c.bin"), ("other", "c.bin"))
    assert (await stats(api), await stats(api, "other")) == ((2, 60), (1, 10))
    await transfer(api, "move", (photos, "a.bin"), (photos, "d/b.bin"))
    assert await stats(api) == (1, 10)  # replaced the 50-byte file
    await api.request("DELETE", "/api/v1/files/photos/d/b.bin")
    await api.request("DELETE", "/api/v1/files/photos/d/b.bin")  # already gone: no change
    assert await stats(api) == (0, 0)
    assert await stats(api) == walked(store, photos)
    listed = body_json(await api.request("GET", "/api/v1/buckets"))
    assert {b["name"]: (b["file_count"], b["total_size"]) for b in listed} == {
        "other": (1, 10),
        photos: (0, 0),
    }


async def test_stats_stay_exact_under_concurrent_uploads_and_deletes(
    api: Api, store: Store, photos: str
) -> None:
    rng = random.Random(7)
    keys = [f"k{i % 12}/f{i % 5}" for i in range(12)]

    async def worker() -> None:
        for _ in range(25):
            key = rng.choice(keys)
            if rng.random() < 0.6:
                await api.upload(photos, key, os.urandom(rng.randrange(0, 3000)))
            else:
                await api.request("DELETE", f"/api/v1/files/photos/{key}")

    await asyncio.gather(*(worker() for _ in range(8)))
    assert await stats(api) == walked(store, photos)


@pytest.mark.fs_only
async def test_a_worker_dying_mid_change_is_recounted(api: Api, store: Store, photos: str) -> None:
    await api.upload(photos, "a.bin", b"x" * 100)
    # What a kill -9 between a rename and its counter update leaves: a file the counters miss,
    # and the dead worker's marker.
    (store.root / photos / "sneaked-in.bin").write_bytes(b"y" * 23)
    marker = store.root / blobfs.INTERNAL_DIR / "workers" / "999999-dead.alive"
    marker.write_bytes(b"")
    assert await stats(api) == (1, 100)
    assert store.recover() == [999999]
    assert not marker.exists()
    assert await stats(api) == (2, 123)
    assert store.recover() == []  # nothing dead: no recount


@pytest.mark.fs_only
async def test_a_live_worker_marker_is_left_alone(store: Store, photos: str) -> None:
    store.register_worker()
    try:
        assert store.recover() == []
        assert len(os.listdir(store.root / blobfs.INTERNAL_DIR / "workers")) == 1
    finally:
        store.unregister_worker()
    assert os.listdir(store.root / blobfs.INTERNAL_DIR / "workers") == []
