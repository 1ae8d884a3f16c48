"""Two storage_server nodes sharing one SeaweedFS cluster (3 masters, 3 volume servers keeping 2
copies, 2 filers with S3): what one node writes the other serves, and files acknowledged before a
volume server and the leader master are killed are all still there, byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.seaweed import SeaweedFS, s3_env
from tests.service import MiB, Service


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    weed = SeaweedFS.cluster(tmp_path_factory.mktemp("cluster"))
    yield weed
    weed.stop()


@pytest.fixture
def nodes(cluster: SeaweedFS, tmp_path: Path) -> Iterator[list[Service]]:
    """Node n talks to filer n; both use the same S3 bucket and prefix."""
    prefix = f"scale-{os.urandom(4).hex()}/"
    cluster.make_bucket("storage-tests")  # the operator's one-time step
    started = [
        Service(tmp_path / f"node{n}", "--workers", "2", env=s3_env(endpoint, s3_prefix=prefix))
        for n, endpoint in enumerate(cluster.endpoints)
    ]
    try:
        for node in started:
            node.wait_ready(workers=2, timeout=30)
        yield started
    finally:
        for node in started:
            node.stop()


def put(node: Service, key: str, data: bytes) -> int:
    return node.request("PUT", f"/api/v1/files/shared/{key}", data)[0]


def sha256_of(node: Service, key: str) -> str | None:
    status, body = node.request("GET", f"/api/v1/files/shared/{key}")
    return hashlib.sha256(body).hexdigest() if status == 200 else None


def listed(node: Service) -> set[str]:
    paths: set[str] = set()
    cursor = ""
    while True:
        status, body = node.request("GET", f"/api/v1/buckets/shared/files?limit=1000{cursor}")
        assert status == 200, body
        page = json.loads(body)
        paths |= {f["path"] for f in page["files"]}
        if not page["next_cursor"]:
            return paths
        cursor = f"&cursor={page['next_cursor']}"


def test_what_one_node_writes_the_other_reads_lists_and_deletes(nodes: list[Service]) -> None:
    a, b = nodes
    assert a.request("POST", "/api/v1/buckets", b'{"name": "shared", "description": "two nodes"}')[0] == 201
    status, body = b.request("GET", "/api/v1/buckets/shared")
    assert (status, json.loads(body)["description"]) == (200, "two nodes")
    files = {f"dir{n % 3}/file{n}.bin": os.urandom(random.randint(0, 300_000)) for n in range(20)}
    files["big/over-two-parts.bin"] = os.urandom(40 * MiB)
    for key, data in files.items():
        assert put(a, key, data) == 201
    for key, data in files.items():
        assert sha256_of(b, key) == hashlib.sha256(data).hexdigest(), key
    assert listed(b) == set(files)
    assert json.loads(b.request("GET", "/api/v1/buckets/shared")[1])["file_count"] == len(files)
    for key in list(files)[:5]:
        assert b.request("DELETE", f"/api/v1/files/shared/{key}")[0] == 204
        assert a.request("GET", f"/api/v1/files/shared/{key}")[0] == 404
    assert b.request("DELETE", "/api/v1/buckets/shared")[0] == 204
    assert a.request("GET", "/api/v1/files/shared/dir0/file0.bin")[0] == 404


def test_no_acknowledged_file_is_lost_when_a_volume_server_and_the_leader_die(
    cluster: SeaweedFS, nodes: list[Service]
) -> None:
    assert nodes[0].request("POST", "/api/v1/buckets", b'{"name": "shared"}')[0] == 201
    acknowledged: dict[str, str] = {}
    refused: list[int] = []
    stop = threading.Event()

    def writer(worker: int) -> None:
        n = 0
        while not stop.is_set():
            key = f"w{worker}/f{n}.bin"
            data = os.urandom(random.choice([1_000, 100_000, 2 * MiB]))
            try:
                status = put(nodes[n % 2], key, data)
            except OSError:
                status = 0  # the node gave up on the engine mid-request: not acknowledged
            if status == 201:
                acknowledged[key] = hashlib.sha256(data).hexdigest()
            else:
                refused.append(status)
            n += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(3)
    before_failures = len(acknowledged)
    cluster.processes["volume1"].kill()
    time.sleep(3)
    leader = cluster.leader()
    cluster.processes[leader].kill()
    time.sleep(8)
    stop.set()
    for thread in threads:
        thread.join(60)
    print(
        f"acknowledged {len(acknowledged)} ({before_failures} before the kills), "
        f"refused {len(refused)}: {sorted(set(refused))}; killed volume1 and {leader}"
    )
    assert before_failures > 0
    assert len(acknowledged) > before_failures  # the cluster kept taking writes
    assert set(refused) <= {0, 503}  # a failing engine is a 503, never a 500 or a lie

    lost = {}
    deadline = time.monotonic() + 60  # reads may wait for the new leader
    for key, digest in acknowledged.items():
        while True:
            got = [sha256_of(node, key) for node in nodes]
            if got == [digest, digest] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if got != [digest, digest]:
            lost[key] = got
    assert lost == {}
    assert listed(nodes[1]) >= set(acknowledged)
