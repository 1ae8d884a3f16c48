"""The OpenAPI document (validated, complete, generated from the routes) and the offline docs page."""

from __future__ import annotations

import json
import re

from openapi_spec_validator import validate

from storage_server.handlers import ROUTES
from tests.conftest import Api


async def test_openapi_document_is_valid_3_1(api: Api) -> None:
    response = await api.request("GET", "/openapi.json")
    assert response.code == 200
    assert response.headers["Content-Type"] == "application/json"
    document = json.loads(response.body)
    assert document["openapi"] == "3.1.0"
    validate(document)


async def test_every_route_and_method_is_documented(api: Api) -> None:
    document = json.loads((await api.request("GET", "/openapi.json")).body)
    for template, handler in ROUTES:
        documented = set(document["paths"].get(template, {}))
        implemented = {m.lower() for m in handler.allowed_methods()}
        if handler.ops:
            assert documented == implemented, template
    upload = document["paths"]["/api/v1/files/{bucket}/{path}"]["put"]
    assert set(upload["requestBody"]["content"]) == {"application/octet-stream", "multipart/form-data"}
    assert {"201", "400", "404", "409", "412", "413", "507"} <= set(upload["responses"])
    bucket_schema = document["components"]["schemas"]["Bucket"]["properties"]
    assert {"file_count", "total_size"} <= set(bucket_schema)


async def test_docs_page_loads_swagger_ui_from_local_assets_only(api: Api) -> None:
    page = await api.request("GET", "/docs")
    assert page.code == 200
    html = page.body.decode()
    assert "/openapi.json" in html
    assert not re.search(r"https?://", html)
    for asset in re.findall(r'(?:src|href)="(/docs/static/[^"]+)"', html):
        response = await api.request("GET", asset)
        assert response.code == 200, asset
        assert len(response.body) > 1000
    bundle = (await api.request("GET", "/docs/static/swagger-ui-bundle.js")).body
    assert b"SwaggerUIBundle" in bundle
