"""The OpenAPI 3.1 document, built from the route table and the handlers' `ops` descriptions, with
every schema taken from the pydantic models: nothing here is written down twice."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from .. import __version__
from .base import BaseHandler, Op
from .guard import Rule
from .models import BUCKET_NAME, KEY, ErrorBody

REF = "#/components/schemas/{model}"
SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
    "Bearer": {"type": "http", "scheme": "bearer"},
}
PATH_PARAMS = {"bucket": BUCKET_NAME, "path": KEY}
ANY_FILE: dict[str, Any] = {"*/*": {"schema": {}}}
UPLOAD_BODY = {
    "application/octet-stream": {"schema": {}},
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {"file": {"type": "string", "format": "binary"}},
            "required": ["file"],
        },
        "encoding": {"file": {"contentType": "application/octet-stream"}},
    },
}
REASONS = {
    200: "OK",
    201: "Created",
    204: "No Content",
    206: "Partial Content",
    304: "Not Modified",
    400: "Bad request: invalid name, key, body, header or checksum",
    401: "No key, or an unknown one (when the service has keys)",
    403: "The key may not do this here, or the signed URL is expired or invalid",
    404: "Bucket, file or route not found",
    409: "A file stands where a folder is needed (or the reverse), or the file is damaged",
    412: "A precondition (If-Match, If-None-Match, If-Unmodified-Since) failed",
    413: "Larger than the configured upload limit or the bucket's file_size_limit",
    415: "The bucket's allowed_mime_types do not include the file's type",
    416: "Range not satisfiable",
    422: "The JSON body or query does not fit its schema",
    503: "Storage unavailable",
    507: "Insufficient storage",
}


def _element(kind: Any) -> type[BaseModel] | None:
    """The model inside `kind` (a model, list[model], "file" or None)."""
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return kind
    args = typing.get_args(kind)
    return args[0] if args and isinstance(args[0], type) and issubclass(args[0], BaseModel) else None


def _schema(kind: Any) -> dict[str, Any]:
    model = _element(kind)
    assert model is not None
    ref = {"$ref": REF.format(model=model.__name__)}
    return {"type": "array", "items": ref} if typing.get_origin(kind) is list else ref


def _json(kind: Any) -> dict[str, Any]:
    return {"application/json": {"schema": _schema(kind)}}


def _operation(
    template: str, method: str, op: Op, params: list[dict[str, Any]], rule: Rule | None
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": op.summary,
        "description": op.notes,
        "operationId": method + "_" + re.sub(r"\W+", "_", template).strip("_"),
        "parameters": list(params),
    }
    if op.query is not None:
        properties = op.query.model_json_schema()["properties"]
        for name, schema in properties.items():
            description = schema.pop("description", "")
            options = [o for o in schema.pop("anyOf", []) if o.get("type") != "null"]
            if options:  # a query value is never null: absent is how a client says "none"
                schema.update(options[0])
                schema.pop("default", None)
            operation["parameters"].append(
                {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
            )
    for name, description in op.headers.items():
        values = op.header_values.get(name)
        operation["parameters"].append(
            {
                "name": name,
                "in": "header",
                "required": False,
                "schema": {"type": "string", **({"enum": list(values)} if values else {})},
                "description": description,
            }
        )
    if op.body == "file":
        operation["requestBody"] = {"required": False, "content": UPLOAD_BODY}
    elif op.body is not None:
        operation["requestBody"] = {"required": True, "content": _json(op.body)}
    ok: dict[str, Any] = {"description": REASONS.get(op.ok, "OK")}
    if op.response == "file":
        ok["content"] = ANY_FILE
    elif op.response is not None:
        ok["content"] = _json(op.response)
    responses: dict[str, Any] = {str(op.ok): ok}
    for status, description in op.also.items():
        responses[str(status)] = {"description": description}
        if status == 206:
            responses[str(status)]["content"] = ANY_FILE
    secured = rule is not None and rule.need is not None
    for status in sorted({*op.errors, *((401, 403) if secured else ())}):
        responses[str(status)] = {"description": REASONS[status], "content": _json(ErrorBody)}
    if not secured:
        operation["security"] = []  # open to anyone, keys or not
    elif rule is not None and (rule.public or rule.signed):
        # A key, or none at all: a public bucket's file, or a signed URL (its query says).
        operation["security"] = [{"ApiKey": []}, {"Bearer": []}, {}]
    responses["default"] = {"description": "Any other error", "content": _json(ErrorBody)}
    operation["responses"] = responses
    return operation


def _models(handlers: Iterable[type[BaseHandler]]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Request models as they are validated, response models as they are serialized."""
    found: dict[str, tuple[type[BaseModel], JsonSchemaMode]] = {"ErrorBody": (ErrorBody, "serialization")}
    for handler in handlers:
        for op in handler.ops.values():
            for kind, mode in ((op.body, "validation"), (op.response, "serialization")):
                if (model := _element(kind)) is not None:
                    found[model.__name__] = (model, mode)  # type: ignore[assignment]
    return list(found.values())


def document(
    routes: Sequence[tuple[str, type[BaseHandler]]], access: Mapping[str, Mapping[str, Rule]]
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of these (path template, handler) routes, with the access rules
    of each method as its security."""
    paths: dict[str, Any] = {}
    for template, handler in routes:
        if not handler.ops:
            continue
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string", **PATH_PARAMS[name]}}
            for name in re.findall(r"{(\w+)}", template)
        ]
        rules = access.get(template, {})
        paths[template] = {
            method: _operation(template, method, op, params, rules.get(method.upper()))
            for method, op in handler.ops.items()
        }
    _, schemas = models_json_schema(_models(h for _, h in routes), ref_template=REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "SelfDB storage service",
            "version": __version__,
            "description": "Buckets of files, streamed in and out. Errors are always {detail, code}.",
        },
        "paths": paths,
        "components": {"schemas": schemas.get("$defs", {}), "securitySchemes": SECURITY_SCHEMES},
        # Either header: with keys configured, every operation not marked open needs one.
        "security": [{"ApiKey": []}, {"Bearer": []}],
    }
