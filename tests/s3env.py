"""The S3 endpoint for tests: both front doors over one store, served from a thread of their own
(so that synchronous S3 clients can run in the test), the keys they sign with, and raw signed
requests made with botocore's signer to tamper with."""

from __future__ import annotations

import asyncio
import http.client
import os
import threading
import time
import urllib.parse
from collections.abc import Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import boto3
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from storage_server.auth.keyring import Keyring
from storage_server.server import make_s3_server, make_server
from storage_server.settings import Settings
from storage_server.store.contract import Store

REGION = "us-east-1"
SECRETS = {
    "reader": "read-secret-0123456789",
    "writer": "write-secret-0123456789",
    "admin": "admin-secret-0123456789",
    "elsewhere": "other-secret-0123456789",  # admin, but only of the bucket "other"
}
ACCESS = {"reader": "read", "writer": "write", "admin": "admin", "elsewhere": "admin"}


def write_keys(path: Path) -> Path:
    lines = []
    for name, secret in SECRETS.items():
        buckets = '["other"]' if name == "elsewhere" else '["*"]'
        lines.append(
            f'[[keys]]\nid = "{name}"\nsecret = "{secret}"\naccess = "{ACCESS[name]}"\nbuckets = {buckets}\n'
        )
    path.write_text("\n".join(lines))
    os.chmod(path, 0o600)
    return path


class Endpoint:
    """The S3 endpoint and the native API over one store, in a thread with its own event loop."""

    def __init__(self, config: Settings, store: Store) -> None:
        self.config = config
        self.keyring = Keyring.load(config.keys_file)
        ready: Future[None] = Future()
        self.thread = threading.Thread(target=self._run, args=(ready, store), daemon=True)
        self.thread.start()
        ready.result(timeout=30)

    def _run(self, ready: Future[None], store: Store) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.s3_server = make_s3_server(self.config, store, self.keyring)
            self.native_server = make_server(self.config, store, self.keyring)
            s3_socks = bind_sockets(0, "127.0.0.1")
            native_socks = bind_sockets(0, "127.0.0.1")
            self.s3_server.add_sockets(s3_socks)
            self.native_server.add_sockets(native_socks)
            self.port = s3_socks[0].getsockname()[1]
            self.native_port = native_socks[0].getsockname()[1]

        self.loop.run_until_complete(start())
        ready.set_result(None)
        self.loop.run_forever()

    @property
    def app(self) -> Application:
        app = self.s3_server.request_callback
        assert isinstance(app, Application)
        return app

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        async def close(server: HTTPServer) -> None:
            server.stop()
            await server.close_all_connections()

        for server in (self.s3_server, self.native_server):
            asyncio.run_coroutine_threadsafe(close(server), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def client(self, key: str = "admin", **config: Any) -> Any:
        """A boto3 S3 client signing with `key`, path-style."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.url,
            region_name=config.pop("region", REGION),
            aws_access_key_id=key,
            aws_secret_access_key=config.pop("secret", SECRETS.get(key, "x" * 20)),
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                **config,
            ),
        )

    def native(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.native_port, timeout=30)
        try:
            conn.request(method, path, body=body, headers={"X-API-Key": SECRETS["admin"]})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()


def credentials(key: str = "admin") -> Credentials:
    return Credentials(key, SECRETS[key])


def sign(
    method: str,
    url: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    key: str = "admin",
    region: str = REGION,
    payload: str | None = None,
) -> dict[str, str]:
    """The headers of a request signed with botocore's SigV4 signer (`payload`: the
    x-amz-content-sha256 to sign instead of the body's hash)."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    signer = S3SigV4Auth(credentials(key), "s3", region)
    if payload is not None:
        signer.payload = lambda _request: payload  # type: ignore[method-assign]
    signer.add_auth(request)
    return dict(request.headers.items())


def presign(method: str, url: str, *, key: str = "admin", expires: int = 300, region: str = REGION) -> str:
    request = AWSRequest(method=method, url=url)
    S3SigV4QueryAuth(credentials(key), "s3", region, expires=expires).add_auth(request)
    return str(request.url)


def raw(
    method: str, url: str, headers: Mapping[str, str] | None = None, body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Send a request as given; the status, headers (lowercase names) and body of the answer."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        sent = {k.lower(): v for k, v in (headers or {}).items()}
        sent.setdefault("host", parts.netloc)
        if body is not None:
            sent.setdefault("content-length", str(len(body)))
        for name, value in sent.items():
            conn.putheader(name, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def wait_until(predicate: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.05)
