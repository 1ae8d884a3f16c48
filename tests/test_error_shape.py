"""One error shape for every route: a walk over the route table sends each route a request that
must fail, and checks the answer is `{"detail", "code"}` with the status the error table gives
that code. The error table of docs/api.md is the one printed from that table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage_server.handlers import ROUTES
from storage_server.native.base import BaseHandler
from storage_server.native.errors import CODES, markdown_table
from tests.conftest import Api

ROOT = Path(__file__).resolve().parent.parent
MISSING = {"{bucket}": "no-such-bucket", "{path}": "some/file.txt", "{id}": "0" * 32}
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
# Bodies that are valid, so that the missing bucket is what fails; `{}` elsewhere (invalid).
VALID_BODIES = {
    "/api/v1/buckets/{bucket}/delete": b'{"paths": ["x"]}',
    "/api/v1/files/{bucket}/{path}": b"x",
    "/api/v1/sign/{bucket}/{path}": b'{"method": "GET", "expires_in": 60}',
}

# The tus routes speak tus: with Tus-Resumable sent, a creation without Upload-Length is a bad
# tus header, and an upload that does not exist is not found, whatever the method.
TUS_FAILURES = {
    "/api/v1/upload/resumable": (400, "invalid_tus_header"),
    "/api/v1/upload/resumable/{id}": (404, "upload_not_found"),
}


def url_of(template: str) -> str:
    for name, value in MISSING.items():
        template = template.replace(name, value)
    return template


def failures() -> list[tuple[str, str, str, int, str]]:
    """(route, method, url, status, code) of one failing request per method of each route, and
    one refused method per route."""
    cases = []
    for template, handler in ROUTES:
        url = url_of(template)
        allowed = [m.upper() for m in handler.allowed_methods()] if issubclass(handler, BaseHandler) else []
        refused = next(m for m in ALL_METHODS if m not in allowed)
        cases.append((template, refused, url, 405, "method_not_allowed"))
        for method in allowed:
            if template in TUS_FAILURES:
                cases.append((template, method, url, *TUS_FAILURES[template]))
            elif "{bucket}" in template:
                cases.append((template, method, url, 404, "bucket_not_found"))
            elif method in ("POST", "PUT", "PATCH"):
                cases.append((template, method, url, 422, "validation_error"))
    return cases


@pytest.mark.parametrize(("route", "method", "url", "status", "code"), failures())
async def test_every_route_fails_in_the_one_error_shape(
    api: Api, route: str, method: str, url: str, status: int, code: str
) -> None:
    body = VALID_BODIES.get(route, b"{}") if method in ("POST", "PUT", "PATCH") else None
    headers = {"Content-Type": "application/json"}
    if route in TUS_FAILURES:
        headers["Tus-Resumable"] = "1.0.0"
    response = await api.request(method, url, body, headers=headers)
    assert response.code == status, (route, method, response.body)
    if method == "HEAD":
        return  # no body to look at
    error = json.loads(response.body)
    assert set(error) == {"detail", "code"}
    assert error["code"] == code
    assert CODES[error["code"]].status == response.code
    assert response.headers["Content-Type"] == "application/json"
    if status == 405:
        assert method not in response.headers["Allow"]


def test_every_route_is_walked() -> None:
    walked = {route for route, *_ in failures()}
    assert walked == {template for template, _ in ROUTES}


def test_the_documented_error_table_is_the_one_the_code_answers_with() -> None:
    readme = (ROOT / "docs" / "api.md").read_text()
    table = readme.split("<!-- errors:begin -->\n", 1)[1].split("<!-- errors:end -->", 1)[0]
    assert table == markdown_table()
