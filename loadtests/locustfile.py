"""Load test mix for storage_server (see README "Load tests").

StorageUser: lists and reads buckets, uploads small/medium/large files, downloads and deletes them.
ResumableUser: uploads the medium file through tus in 256 KiB chunks, resumed half-way, checked.
BucketUser: creates, reads, updates and deletes its own buckets.
LargeFileUser (on demand: set LOADTEST_LARGE_MIB): uploads, downloads and checks a large file.

Test files are generated once on disk (LOADTEST_DIR, default: a folder in the system temp dir) and
streamed from there, so the load generator's memory stays flat whatever their size.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import tempfile
import uuid
from pathlib import Path
from typing import Any

from locust import HttpUser, between, events, task

API = "/api/v1"
SHARED_BUCKET = "loadtest"
FILES_DIR = Path(os.environ.get("LOADTEST_DIR", Path(tempfile.gettempdir()) / "storage-server-loadtest"))
MiB = 1 << 20
SIZES = {
    "small": 4 * 1024,
    "medium": 1 * MiB,
    "large": 10 * MiB,
    "huge": int(os.environ.get("LOADTEST_LARGE_MIB", "0")) * MiB,
}


def test_file(kind: str) -> Path:
    """The generated file of that kind, written block by block the first time it is asked for."""
    path = FILES_DIR / f"{kind}.bin"
    if not path.exists() or path.stat().st_size != SIZES[kind]:
        FILES_DIR.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        block = os.urandom(MiB)
        with partial.open("wb") as out:
            left = SIZES[kind]
            while left > 0:
                left -= out.write(block[: min(left, MiB)])
        partial.replace(path)
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while block := src.read(MiB):
            digest.update(block)
    return digest.hexdigest()


@events.test_start.add_listener
def make_files(environment: Any, **_kwargs: Any) -> None:
    for kind in ("small", "medium", "large"):
        test_file(kind)


API_KEY = os.environ.get("LOADTEST_API_KEY")  # a key of the service's STORAGE_KEYS_FILE, if it has one


class KeyedUser(HttpUser):
    """Sends LOADTEST_API_KEY (when set) with every request, as the SelfDB backend does."""

    abstract = True

    def on_start(self) -> None:
        if API_KEY:
            self.client.headers["X-API-Key"] = API_KEY


class StorageUser(KeyedUser):
    """The everyday mix the SelfDB backend sends."""

    wait_time = between(0.1, 0.5)

    def on_start(self) -> None:
        super().on_start()
        self.client.post(f"{API}/buckets", json={"name": SHARED_BUCKET})
        self.prefix = uuid.uuid4().hex[:12]
        self.mine: list[str] = []

    def upload(self, kind: str) -> None:
        key = f"{self.prefix}/{kind}-{uuid.uuid4().hex[:8]}.bin"
        with test_file(kind).open("rb") as body:
            response = self.client.post(
                f"{API}/files/{SHARED_BUCKET}/{key}",
                data=body,
                headers={"Content-Type": "application/octet-stream", "X-Filename": f"{kind}.bin"},
                name=f"upload {kind}",
            )
        if response.status_code == 201:
            self.mine.append(key)

    @task(3)
    def list_buckets(self) -> None:
        self.client.get(f"{API}/buckets")

    @task(2)
    def get_bucket(self) -> None:
        self.client.get(f"{API}/buckets/{SHARED_BUCKET}")

    @task(4)
    def upload_small(self) -> None:
        self.upload("small")

    @task(2)
    def upload_medium(self) -> None:
        self.upload("medium")

    @task(1)
    def upload_large(self) -> None:
        self.upload("large")

    @task(6)
    def download(self) -> None:
        if self.mine:
            key = random.choice(self.mine)
            with self.client.get(
                f"{API}/files/{SHARED_BUCKET}/{key}", stream=True, name="download", catch_response=True
            ) as response:
                for _ in response.iter_content(64 * 1024):
                    pass

    @task(2)
    def delete(self) -> None:
        if self.mine:
            key = self.mine.pop(random.randrange(len(self.mine)))
            self.client.delete(f"{API}/files/{SHARED_BUCKET}/{key}", name="delete")

    @task(1)
    def health(self) -> None:
        self.client.get("/health")


class BucketUser(KeyedUser):
    """Bucket administration: each user works on buckets of its own."""

    wait_time = between(0.5, 1.5)

    @task
    def bucket_lifecycle(self) -> None:
        name = f"lt-{uuid.uuid4().hex[:16]}"
        self.client.post(f"{API}/buckets", json={"name": name, "public": False}, name="create bucket")
        self.client.get(f"{API}/buckets/{name}", name="get bucket")
        self.client.put(
            f"{API}/buckets/{name}", json={"public": True, "description": "load"}, name="update bucket"
        )
        self.client.post(f"{API}/files/{name}/a.txt", data=b"x", name="upload tiny")
        self.client.delete(f"{API}/buckets/{name}", name="delete bucket")


class LargeFileUser(KeyedUser):
    """On demand only (name it on the command line): one huge file up, down and checked."""

    wait_time = between(1, 2)
    weight = 1 if "LOADTEST_LARGE_MIB" in os.environ else 0  # off unless its file size is given

    def on_start(self) -> None:
        super().on_start()
        self.client.post(f"{API}/buckets", json={"name": SHARED_BUCKET})
        self.source = test_file("huge")
        self.digest = sha256_of(self.source)

    @task
    def round_trip(self) -> None:
        key = f"huge/{uuid.uuid4().hex}.bin"
        with (
            self.source.open("rb") as body,
            self.client.post(
                f"{API}/files/{SHARED_BUCKET}/{key}", data=body, name="upload huge", catch_response=True
            ) as response,
        ):
            if response.status_code != 201 or response.json()["file"]["sha256"] != self.digest:
                response.failure(f"upload answered {response.status_code} or a wrong sha256")
                return
        digest = hashlib.sha256()
        with self.client.get(
            f"{API}/files/{SHARED_BUCKET}/{key}", stream=True, name="download huge", catch_response=True
        ) as response:
            for block in response.iter_content(MiB):
                digest.update(block)
            if digest.hexdigest() != self.digest:
                response.failure("downloaded bytes differ from the upload")
        self.client.delete(f"{API}/files/{SHARED_BUCKET}/{key}", name="delete huge")


class ResumableUser(KeyedUser):
    """Resumable uploads (tus 1.0.0, docs/resumable.md): the medium file in 256 KiB chunks, each
    upload resumed once from its HEAD offset half-way, then checked by its sha256."""

    wait_time = between(0.2, 1.0)
    weight = 1
    chunk = 256 * 1024

    def on_start(self) -> None:
        super().on_start()
        self.client.post(f"{API}/buckets", json={"name": SHARED_BUCKET})
        self.data = test_file("medium").read_bytes()
        self.digest = hashlib.sha256(self.data).hexdigest()

    @task
    def resumable_upload(self) -> None:
        key = f"tus/{uuid.uuid4().hex}.bin"
        tus = {"Tus-Resumable": "1.0.0"}
        meta = ",".join(
            f"{name} {base64.b64encode(value.encode()).decode()}"
            for name, value in (("bucketName", SHARED_BUCKET), ("objectName", key))
        )
        created = self.client.post(
            f"{API}/upload/resumable",
            headers={**tus, "Upload-Length": str(len(self.data)), "Upload-Metadata": meta},
            name="tus create",
        )
        if created.status_code != 201:
            return
        url = created.headers["Location"]
        offset = 0
        while offset < len(self.data):
            if offset >= len(self.data) // 2 and offset < len(self.data) // 2 + self.chunk:
                offset = int(self.client.head(url, headers=tus, name="tus head").headers["Upload-Offset"])
            chunk = self.data[offset : offset + self.chunk]
            headers = {**tus, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
            answer = self.client.patch(url, data=chunk, headers=headers, name="tus patch")
            if answer.status_code != 204:
                return
            offset = int(answer.headers["Upload-Offset"])
        with self.client.get(
            f"{API}/files/{SHARED_BUCKET}/{key}", name="tus download", catch_response=True
        ) as response:
            if hashlib.sha256(response.content).hexdigest() != self.digest:
                response.failure("the resumable upload stored other bytes")
        self.client.delete(f"{API}/files/{SHARED_BUCKET}/{key}", name="delete tus")
