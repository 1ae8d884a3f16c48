"""A real browser (headless Chromium) on a page of another origin: it uploads through a signed PUT
URL and downloads through a signed GET URL with fetch(), which only CORS lets it read."""

from __future__ import annotations

import hashlib
import html
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests import browser
from tests.service import Service

ADMIN = "admin-secret-4c8e2a9f1d7b3650"
WRITER = "writer-secret-9b1f5d3e7a2c8046"
KEYS = f"""
[[keys]]
id = "setup"
secret = "{ADMIN}"
access = "admin"

[[keys]]
id = "browser-uploads"
secret = "{WRITER}"
access = "write"
buckets = ["photos"]
"""
SIZE = 200 * 1024
CHROMIUM_TIMEOUT = 60.0


def pattern(size: int) -> bytes:
    """The bytes the page makes (the same formula in JS): every byte value, not a plain cycle."""
    return bytes((i * 7 + (i >> 8)) & 0xFF for i in range(size))


UPLOAD_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>upload</title></head>
<body><pre id="result">pending</pre>
<script>
const putUrl = %(put)s, getUrl = %(get)s, size = %(size)d;
async function run() {
  const sent = new Uint8Array(size);
  for (let i = 0; i < size; i++) sent[i] = (i * 7 + (i >> 8)) & 0xff;
  const put = await fetch(putUrl, {
    method: "PUT",
    body: new Blob([sent]),
    headers: {"Content-Type": "application/octet-stream"},
  });
  if (put.status !== 201) return "PUT " + put.status + " " + await put.text();
  const got = await fetch(getUrl);
  if (got.status !== 200) return "GET " + got.status + " " + await got.text();
  const back = new Uint8Array(await got.arrayBuffer());
  if (back.length !== size) return "length " + back.length;
  for (let i = 0; i < size; i++) {
    if (back[i] !== sent[i]) return "byte " + i + " differs";
  }
  return "OK " + got.headers.get("ETag");
}
run().then(
  (outcome) => { document.getElementById("result").textContent = outcome; },
  (error) => { document.getElementById("result").textContent = "ERROR " + error; },
);
</script></body></html>
"""

READ_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>read</title></head>
<body><pre id="result">pending</pre>
<script>
const show = (text) => { document.getElementById("result").textContent = text; };
fetch(%(get)s).then(
  async (got) => show("READ " + (await got.arrayBuffer()).byteLength),
  (error) => show(error.name + ": " + error.message),
);
</script></body></html>
"""


class Pages:
    """An HTTP server on its own 127.0.0.1 port (so its own origin) serving one page, page.html."""

    def __init__(self) -> None:
        self.page = b""
        pages = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                found = self.path == "/page.html"
                body = pages.page if found else b"not found"
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def serve(self, template: str, **urls: str | int) -> str:
        """Serve `template` with the URLs (JSON-quoted) filled in; the page's URL."""
        self.page = (
            template % {k: json.dumps(v) if isinstance(v, str) else v for k, v in urls.items()}
        ).encode()
        return f"{self.origin}/page.html"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pages() -> Iterator[tuple[Pages, Pages]]:
    """Two page servers: the first one's origin is allowed by CORS, the second one's is not."""
    allowed, other = Pages(), Pages()
    yield allowed, other
    allowed.close()
    other.close()


def api(service: Service, method: str, path: str, body: Any, secret: str) -> tuple[int, Any]:
    conn = service.connection()
    try:
        headers = {"Content-Type": "application/json", "X-API-Key": secret}
        conn.request(method, path, body=json.dumps(body), headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def sign(service: Service, method: str, path: str) -> str:
    """A signed URL (absolute) for `method` on the file at `path`, issued by the write key."""
    status, answer = api(
        service, "POST", f"/api/v1/sign/{path}", {"method": method, "expires_in": 300}, WRITER
    )
    assert status == 200, answer
    return f"http://127.0.0.1:{service.port}{answer['url']}"


def dump_dom(url: str, profile: Path) -> str:
    """The text of #result once the page's fetches are done, as headless Chromium dumps it.
    Chromium is installed first when missing; a failed install fails the test (BrowserMissing)."""
    done = subprocess.run(
        [
            browser.chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=15000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=CHROMIUM_TIMEOUT,
    )
    found = re.search(r'<pre id="result">(.*?)</pre>', done.stdout, re.DOTALL)
    assert found is not None, f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return html.unescape(found.group(1))


@pytest.fixture
def service(start: type[Service], tmp_path: Path, pages: tuple[Pages, Pages]) -> Service:
    keys = tmp_path / "keys.toml"
    keys.write_text(KEYS)
    keys.chmod(0o600)
    allowed, _ = pages
    service = start(
        "--workers", "1", "--keys-file", str(keys), "--cors-origins", json.dumps([allowed.origin])
    )
    service.wait_ready(workers=1)
    assert api(service, "POST", "/api/v1/buckets", {"name": "photos"}, ADMIN)[0] == 201
    return service


def test_a_page_of_another_origin_uploads_and_downloads_through_signed_urls(
    service: Service, pages: tuple[Pages, Pages], tmp_path: Path
) -> None:
    allowed, _ = pages
    put = sign(service, "PUT", "photos/from-browser.bin")
    get = sign(service, "GET", "photos/from-browser.bin")
    assert "X-Sign-Signature" in put
    assert WRITER not in put + get

    page = allowed.serve(UPLOAD_PAGE, put=put, get=get, size=SIZE)
    outcome = dump_dom(page, tmp_path / "profile")

    data = pattern(SIZE)
    assert outcome == f'OK "{hashlib.sha256(data).hexdigest()}"'
    assert (service.data / "photos" / "from-browser.bin").read_bytes() == data
    output = service.output()
    assert "key=browser-uploads(signed-url)" in output
    signatures = [value for url in (put, get) for value in re.findall(r"X-Sign-Signature=(\w+)", url)]
    assert len(signatures) == 2
    for secret in (*signatures, WRITER, ADMIN):  # a signed URL is a credential too
        assert secret not in output


def test_a_page_of_an_origin_not_allowed_cannot_read_a_signed_download(
    service: Service, pages: tuple[Pages, Pages], tmp_path: Path
) -> None:
    _, other = pages
    conn = service.connection()
    conn.request("PUT", "/api/v1/files/photos/a.bin", body=b"secret bytes", headers={"X-API-Key": WRITER})
    assert conn.getresponse().status == 201
    conn.close()
    get = sign(service, "GET", "photos/a.bin")
    conn = service.connection()  # outside a browser the URL works: only CORS stops the page
    conn.request(
        "GET", get.removeprefix(f"http://127.0.0.1:{service.port}"), headers={"Origin": other.origin}
    )
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"secret bytes")
    assert response.getheader("Access-Control-Allow-Origin") is None
    conn.close()

    outcome = dump_dom(other.serve(READ_PAGE, get=get), tmp_path / "profile")

    assert outcome.startswith("TypeError: "), outcome
