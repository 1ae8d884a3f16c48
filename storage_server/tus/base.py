"""What both tus routes share: the tus headers on every answer, the OPTIONS discovery answer (and
CORS preflight), and admission: a key with `write` on the upload's bucket, or a signed PUT URL of
exactly the upload's bucket and object."""

from __future__ import annotations

import urllib.parse

from tornado.http1connection import HTTP1Connection

from ..auth import signing
from ..auth.keyring import Access
from ..native.base import BaseHandler
from ..native.errors import ApiError
from ..native.guard import (
    CORS_EXPOSED,
    CORS_HEADERS,
    by_key,
    check_grant,
    cors_origin,
    credentials,
    unauthorized,
)
from . import protocol

NO_LIMIT = 1 << 62


class TusHandler(BaseHandler):
    """A tus route: every answer says `Tus-Resumable`, and errors keep the JSON error shape."""

    def set_default_headers(self) -> None:
        super().set_default_headers()
        if getattr(self, "config", None) is None:
            return
        self.set_header("Tus-Resumable", protocol.VERSION)
        if "Access-Control-Allow-Origin" in self._headers:
            self.set_header("Access-Control-Expose-Headers", f"{CORS_EXPOSED}, {protocol.TUS_EXPOSED}")

    @property
    def max_size(self) -> int:
        """Tus-Max-Size: STORAGE_MAX_UPLOAD_SIZE, or 5 TiB."""
        limit = self.config.max_upload_size
        return protocol.DEFAULT_MAX_SIZE if limit is None else limit

    @property
    def connection(self) -> HTTP1Connection:
        conn = self.request.connection
        assert isinstance(conn, HTTP1Connection)
        return conn

    async def options(self, *_args: str) -> None:
        """tus discovery (what the server supports), and a CORS preflight for allowed origins."""
        origin = cors_origin(self.config.cors_origins, self.request.headers.get("Origin"))
        if origin is not None and "Access-Control-Request-Method" in self.request.headers:
            self.set_header("Access-Control-Allow-Methods", ", ".join(self.allowed_methods()))
            self.set_header("Access-Control-Allow-Headers", f"{CORS_HEADERS}, {protocol.TUS_HEADERS}")
            self.set_header("Access-Control-Max-Age", "600")
        self.set_header("Tus-Version", protocol.VERSION)
        self.set_header("Tus-Extension", protocol.EXTENSIONS)
        self.set_header("Tus-Max-Size", str(self.max_size))
        self.set_header("Tus-Checksum-Algorithm", ",".join(protocol.CHECKSUMS))
        self.set_status(204)
        self.finish()

    def admit_key(self) -> bool:
        """First step of admission, before the upload's bucket is known: a key must have `write`
        (its buckets are checked by `admit_for`). True when the request instead carries a signed
        URL's query, checked by `admit_for` too; raise 401 or 403."""
        rule = self.rules.get(self.request.method or "")
        if rule is None or rule.need is None or not self.keyring.enabled:
            return False
        secret = credentials(self.request.headers)
        if secret is not None:
            self.key = by_key(self.keyring, secret, rule, None)
            return False
        if signing.is_signed(self.request.query_arguments):
            return True
        raise unauthorized("this request needs a key: X-API-Key or Authorization: Bearer")

    def admit_for(self, bucket: str, key: str, signed: bool) -> None:
        """Second step, once the bucket and object are known: the key must cover the bucket, or
        the signed URL must be a PUT URL of exactly that file."""
        if not signed:
            self.authorize(Access.WRITE, bucket)
            return
        query = self.request.query_arguments
        values = {name: raw[-1].decode("utf-8", "surrogateescape") for name, raw in query.items()}
        try:
            grant = signing.verify(self.keyring, values, bucket, key, self.application.settings["clock"]())
        except signing.SignatureExpired:
            raise ApiError("signature_expired", "the signed URL has expired") from None
        except signing.SignatureInvalid:
            raise ApiError("signature_invalid", "the signed URL does not hold") from None
        check_grant(grant, self.rules[self.request.method or ""])
        self.grant = grant

    def signed_query(self) -> str:
        """The signed URL's parameters of this request, to carry on to the upload's URL."""
        params = [
            (name, raw[-1].decode("utf-8", "surrogateescape"))
            for name, raw in self.request.query_arguments.items()
            if name in signing.PARAMS
        ]
        return "&".join(f"{name}={_quote(value)}" for name, value in params)


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")
