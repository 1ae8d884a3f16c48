"""Fixtures: a real server on a free port with its storage in a temp dir, and a client for it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPResponse
from tornado.httpserver import HTTPServer
from tornado.ioloop import IOLoop
from tornado.testing import bind_unused_port

from storage_server.blobfs import BlobStore
from storage_server.server import make_server
from storage_server.settings import Settings
from tests.service import Service


@pytest.fixture
def config(tmp_path: Path) -> Settings:
    return Settings(path=tmp_path / "data", stall_timeout=2.0)


@pytest.fixture
def store(config: Settings) -> BlobStore:
    store = BlobStore.for_settings(config)
    store.prepare()
    return store


@pytest.fixture
def http_server(io_loop: IOLoop, config: Settings, store: BlobStore) -> Iterator[HTTPServer]:
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
