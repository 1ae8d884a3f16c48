"""Who may do what on the native API: the rule of each route and method (the table itself is
ACCESS in handlers.py), checked before a handler runs, with a key, a signed URL or a public
bucket; and the CORS answers a browser needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ..auth.keyring import Access, Key, Keyring
from ..auth.signing import Grant
from ..store.errors import PreconditionFailed
from ..store.records import FileRecord
from .errors import ApiError

REALM = 'Bearer realm="storage_server"'
CORS_HEADERS = (
    "Authorization, Content-Type, Content-MD5, Content-Digest, Repr-Digest, Range, If-Match, "
    "If-None-Match, If-Modified-Since, If-Unmodified-Since, If-Range, X-API-Key, X-Checksum-SHA256, "
    "X-Filename"
)
CORS_EXPOSED = (
    "ETag, Content-Range, Content-Length, Content-Disposition, Repr-Digest, Last-Modified, Accept-Ranges"
)


@dataclass(frozen=True)
class Rule:
    """What one method of one route needs. `need` None: open to anyone. `scope`: where the
    bucket the key must cover comes from (`path`: the route's {bucket}; `body`: the handler
    checks it with `authorize` once the body is read; `none`: no bucket). `public`: a file of a
    public bucket needs no key. `signed`: a signed URL for this method ("GET" or "PUT") admits."""

    need: Access | None
    scope: Literal["path", "body", "none"] = "none"
    public: bool = False
    signed: Literal["GET", "PUT"] | None = None


OPEN = Rule(None)


def credentials(headers: Mapping[str, str]) -> str | None:
    """The secret a request carries: `X-API-Key`, or `Authorization: Bearer`; "" for an
    Authorization of another scheme (never a valid secret)."""
    if (key := headers.get("X-API-Key")) is not None:
        return key
    if (auth := headers.get("Authorization")) is not None:
        scheme, _, secret = auth.strip().partition(" ")
        return secret.strip() if scheme.lower() == "bearer" else ""
    return None


def unauthorized(detail: str) -> ApiError:
    return ApiError("unauthorized", detail, {"WWW-Authenticate": REALM})


def by_key(keyring: Keyring, secret: str, rule: Rule, bucket: str | None) -> Key:
    """The key of `secret` if it may do what `rule` needs (on `bucket`); raise 401 or 403."""
    key = keyring.by_secret(secret)
    if key is None:
        raise unauthorized("the key is not known")
    assert rule.need is not None
    if not key.may(rule.need, bucket):
        raise forbidden(key)
    return key


def forbidden(key: Key) -> ApiError:
    return ApiError("forbidden", f"key '{key.id}' may not do this here")


def check_grant(grant: Grant, rule: Rule) -> None:
    """A signed URL admits only the method it was signed for."""
    if grant.method != rule.signed:
        raise ApiError("signature_invalid", "the signed URL does not hold")


def cors_origin(allowed: list[str], origin: str | None) -> str | None:
    """The Access-Control-Allow-Origin to answer `origin` with, or None."""
    if origin is None or not allowed:
        return None
    if "*" in allowed:
        return "*"
    return origin if origin in allowed else None


def create_only(current: FileRecord | None) -> None:
    """A signed upload URL without upsert creates only."""
    if current is not None:
        raise PreconditionFailed("the file exists, and the signed URL does not allow replacing it")
