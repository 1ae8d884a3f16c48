"""Swagger UI at /docs, served from the files of the swagger-ui-py wheel (it works offline)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from .base import BaseHandler

DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SelfDB storage API</title>
<link rel="stylesheet" href="/docs/static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script>window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});</script>
</body></html>
"""


class DocsHandler(BaseHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.finish(DOCS_PAGE)


def swagger_assets() -> Path:
    """Swagger UI's files, as shipped in the swagger-ui-py wheel (found without importing it)."""
    spec = importlib.util.find_spec("swagger_ui")
    assert spec is not None
    assert spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "static"
