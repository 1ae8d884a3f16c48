"""Fixtures: a real server on a free port with its storage in a temp dir, and a client for it."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.testing import bind_unused_port

from storage_server.backends import open_store
from storage_server.server import make_server
from storage_server.settings import Settings
from storage_server.store import Store
from tests.ceph import Ceph
from tests.s3env import Endpoint, write_keys
from tests.seaweed import SeaweedFS, s3_settings
from tests.service import Service

# The API's test modules run once per backend; the rest (and tests marked fs_only, which look at
# the files on disk) run on the filesystem backend only.
BOTH_BACKENDS = {
    "test_buckets_api",
    "test_files_api",
    "test_errors",
    "test_conditional",
    "test_digests",
    "test_listing",
    "test_stats",
    "test_copy_move",
    "test_schemathesis",
    "test_store_contract",
    "test_error_shape",
    "test_access",
    "test_store_staging",
    "test_scrub",
    "test_s3api_objects",
    "test_s3api_auth",
    "test_s3api_clients",
    "test_s3api_multipart",
    "test_tus_protocol",
    "test_tus_clients",
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fs_only: looks at the filesystem backend's files on disk")
    config.addinivalue_line(
        "markers", "timeout(seconds): a longer limit for this async test (pytest-tornasync)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    explicit = any(m.args and m.args[0] == "backend" for m in metafunc.definition.iter_markers("parametrize"))
    if "backend" in metafunc.fixturenames and not explicit:
        module = metafunc.module.__name__.rsplit(".", 1)[-1]
        fs_only = metafunc.definition.get_closest_marker("fs_only") is not None
        engines = ["s3", "ceph"] if os.environ.get("STORAGE_TEST_CEPH") else ["s3"]
        backends = ["fs", *engines] if module in BOTH_BACKENDS and not fs_only else ["fs"]
        metafunc.parametrize("backend", engines if module == "test_s3store" else backends)


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS for the whole run; each test gets its own key prefix in it."""
    weed = SeaweedFS.single(tmp_path_factory.mktemp("seaweedfs"))
    yield weed
    weed.stop()


@pytest.fixture(scope="session")
def ceph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ceph]:
    """Ceph RGW, when STORAGE_TEST_CEPH is set (`make test-ceph`)."""
    engine = Ceph.start(tmp_path_factory.mktemp("ceph"))
    yield engine
    engine.stop()


@pytest.fixture
def config(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Settings:
    fields: dict[str, Any] = {}
    if backend == "s3":
        fields = s3_settings(request.getfixturevalue("seaweedfs").endpoints[0])
    elif backend == "ceph":
        fields = s3_settings(request.getfixturevalue("ceph").endpoint)
    return Settings(path=tmp_path / "data", stall_timeout=2.0, **fields)


@pytest.fixture
def store(config: Settings) -> Store:
    store = open_store(config)
    store.prepare()
    return store


@pytest.fixture
def http_server(io_loop: IOLoop, config: Settings, store: Store) -> Iterator[HTTPServer]:
    """The production server (same limits and timeouts as run.py) on an ephemeral port."""
    server = make_server(config, store)
    sock, _port = bind_unused_port()
    server.add_socket(sock)
    yield server
    server.stop()
    io_loop.run_sync(server.close_all_connections, timeout=5)


class Api:
    """Small helper over the test client: JSON in, response out, never raising on a status."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def url(self, path: str) -> str:
        return str(self.client.get_url(path))

    async def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> HTTPResponse:
        if body is not None and not isinstance(body, bytes | str):
            body = json.dumps(body)
            kwargs.setdefault("headers", {}).setdefault("Content-Type", "application/json")
        if body is None and method in ("POST", "PUT", "PATCH") and "body_producer" not in kwargs:
            body = b""
        kwargs.setdefault("request_timeout", 60)
        response: HTTPResponse = await self.client.fetch(
            path, method=method, body=body, raise_error=False, allow_nonstandard_methods=True, **kwargs
        )
        return response

    async def create_bucket(self, name: str = "photos", **fields: Any) -> dict[str, Any]:
        response = await self.request("POST", "/api/v1/buckets", {"name": name, **fields})
        assert response.code in (200, 201), response.body
        return dict(json.loads(response.body))

    async def upload(self, bucket: str, key: str, data: bytes, **kwargs: Any) -> HTTPResponse:
        return await self.request("POST", f"/api/v1/files/{bucket}/{key}", data, **kwargs)


@pytest.fixture
def api(http_server_client: Any) -> Api:
    return Api(http_server_client)


def body_json(response: HTTPResponse) -> Any:
    return json.loads(response.body)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[type[Service]]:
    """Start run.py with the given flags (storage in tmp_path/data); every one is killed after."""
    started: list[Service] = []

    class Started(Service):
        def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
            super().__init__(tmp_path / "data", *args, env=env)
            started.append(self)

    yield Started
    for service in started:
        service.stop()


@pytest.fixture
def s3(tmp_path: Path, config: Settings, store: Store) -> Iterator[Endpoint]:
    """The S3 endpoint and the native API over one store, with the keys of tests/s3env.py."""
    keyed = config.model_copy(update={"keys_file": write_keys(tmp_path / "keys.toml")})
    endpoint = Endpoint(keyed, store)
    yield endpoint
    endpoint.stop()
