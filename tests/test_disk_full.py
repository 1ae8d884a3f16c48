"""A full disk: uploads get 507 and leave nothing, reads go on, space freed is usable at once.

The storage path is a 4 MiB tmpfs mounted for each test (the suite runs as root, as CI does).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage_server import blobfs
from storage_server.blobfs import BlobStore
from storage_server.settings import Settings
from storage_server.store import errors
from tests.conftest import Api, body_json

MiB = 1 << 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture
def config(small_disk: Path) -> Settings:
    return Settings(path=small_disk / "data", stall_timeout=2.0, min_free_bytes=0)


def temp_files(store: BlobStore) -> list[str]:
    return os.listdir(store.root / blobfs.INTERNAL_DIR / "tmp")


def test_store_write_past_the_end_of_the_disk_raises_and_abort_cleans_up(store: BlobStore) -> None:
    store.create_bucket("photos", public=False, description=None)
    upload = store.begin_upload("photos", "big.bin")
    for _ in range(3):
        upload.write(b"x" * MiB)
    with pytest.raises(errors.InsufficientStorage):
        upload.write(b"x" * (2 * MiB))
    upload.abort()
    assert temp_files(store) == []
    assert not (store.root / "photos" / "big.bin").exists()


async def test_upload_larger_than_the_free_space_gets_507_before_its_body(api: Api, store: BlobStore) -> None:
    store.create_bucket("photos", public=False, description=None)
    assert (await api.upload("photos", "kept.txt", b"still here")).code == 201
    response = await api.upload("photos", "big.bin", b"x" * (6 * MiB), expect_100_continue=True)
    assert response.code == 507
    assert body_json(response)["code"] == "insufficient_storage"
    assert temp_files(store) == []
    assert not (store.root / "photos" / "big.bin").exists()
    assert (await api.request("GET", "/api/v1/files/photos/kept.txt")).body == b"still here"


async def test_disk_filling_mid_upload_leaves_nothing_and_space_comes_back(
    api: Api, store: BlobStore
) -> None:
    store.create_bucket("photos", public=False, description=None)
    filler = store.root / "photos" / "filler.bin"
    filler.write_bytes(b"f" * (3 * MiB))  # leaves about 1 MiB

    async def produce(write: object) -> None:
        for _ in range(2):
            await write(b"x" * MiB)  # type: ignore[operator]

    response = await api.request("POST", "/api/v1/files/photos/big.bin", body_producer=produce)
    assert response.code == 507
    assert body_json(response)["code"] == "insufficient_storage"
    assert not (store.root / "photos" / "big.bin").exists()
    assert (await api.request("GET", "/api/v1/files/photos/filler.bin")).code == 200

    filler.unlink()
    response = await api.request("POST", "/api/v1/files/photos/big.bin", body_producer=produce)
    assert response.code == 201  # no restart needed
    assert temp_files(store) == []


async def test_the_free_space_reserve_refuses_uploads_before_the_disk_is_full(
    api: Api, store: BlobStore, config: Settings
) -> None:
    store.create_bucket("photos", public=False, description=None)
    store.reserve = store.free_bytes() - 1 * MiB  # leave room for one more MiB, then refuse
    assert (await api.upload("photos", "fits.bin", b"x" * (512 * 1024))).code == 201
    refused = await api.upload("photos", "too-much.bin", b"x" * (900 * 1024), expect_100_continue=True)
    assert (refused.code, body_json(refused)["code"]) == (507, "insufficient_storage")
    assert store.free_bytes() > 0  # refused with the disk not full
    assert (await api.request("GET", "/api/v1/files/photos/fits.bin")).code == 200
