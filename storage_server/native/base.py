"""What every native handler shares: the JSON error shape, store calls off the event loop,
request parsing, and the operation descriptions the OpenAPI document is built from."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError
from tornado.ioloop import IOLoop
from tornado.web import HTTPError, RequestHandler

from .. import telemetry
from ..auth import signing
from ..auth.keyring import Access, Key, Keyring
from ..auth.signing import Grant
from ..settings import Settings
from ..store.contract import Store
from .errors import ApiError, api_error, code_for_status
from .guard import (
    CORS_EXPOSED,
    CORS_HEADERS,
    Rule,
    by_key,
    check_grant,
    cors_origin,
    credentials,
    forbidden,
    unauthorized,
)
from .models import ErrorBody

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

JSON = "application/json"


@contextlib.contextmanager
def client_errors() -> Iterator[None]:
    """Re-raise the exceptions api_error knows as ApiErrors; let server faults through."""
    try:
        yield
    except Exception as exc:
        error = api_error(exc)
        if error is None or error is exc:
            raise
        raise error from exc


class StallWatch:
    """Calls `on_stall` once `timeout` seconds pass without a call to `seen`: an upload whose
    client stopped sending without hanging up. A slow but steady client never trips it."""

    def __init__(self, timeout: float, on_stall: Callable[[], None]) -> None:
        self._timeout = timeout
        self._on_stall = on_stall
        self._last = IOLoop.current().time()
        self._timer: asyncio.TimerHandle | None = None
        self._check()

    def seen(self) -> None:
        """Data arrived (or was taken in) just now."""
        self._last = IOLoop.current().time()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        idle = IOLoop.current().time() - self._last
        if idle < self._timeout:
            self._timer = asyncio.get_running_loop().call_later(self._timeout - idle, self._check)
            return
        self._timer = None
        self._on_stall()


@dataclass(frozen=True)
class Op:
    """What one method of a route does, for the OpenAPI document.

    `body` and `response` are a pydantic model, a list of one, "file" (raw bytes or multipart on
    the way in, the file's own type on the way out) or None.
    """

    summary: str
    ok: int = 200
    response: Any = None
    body: Any = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    also: Mapping[int, str] = field(default_factory=dict)  # further success statuses
    headers: Mapping[str, str] = field(default_factory=dict)  # request headers it honours
    header_values: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # the only values of some
    notes: str = ""  # more description, in Markdown


class BaseHandler(RequestHandler):
    ops: ClassVar[dict[str, Op]] = {}
    key: Key | None = None  # the key the request was admitted with
    grant: Grant | None = None  # or the signed URL

    def initialize(self, store: Store, config: Settings, route: str, rules: Mapping[str, Rule]) -> None:
        self.store = store
        self.config = config
        self.route = route
        self.rules = rules
        self.bytes_in = 0
        self.bytes_out = 0
        self.set_default_headers()
        self._track(True)

    @property
    def keyring(self) -> Keyring:
        keyring: Keyring = self.application.settings["keyring"]
        return keyring

    @property
    def key_id(self) -> str | None:
        """For the access log: which key the request used (never its secret)."""
        if self.key is not None:
            return self.key.id
        return f"{self.grant.key.id}(signed-url)" if self.grant is not None else None

    async def prepare(self) -> None:
        await self.admit()

    async def admit(self) -> None:
        """Let the request through if its route's rule allows it: raise 401 or 403 otherwise."""
        rule = self.rules.get(self.request.method or "")
        if rule is None or rule.need is None or not self.keyring.enabled:
            return  # open (a method the route lacks is answered 405 by Tornado)
        bucket = self.path_args[0] if rule.scope == "path" else None
        secret = credentials(self.request.headers)
        if secret is not None:
            self.key = by_key(self.keyring, secret, rule, bucket)
            return
        query = self.request.query_arguments
        if rule.signed is not None and signing.is_signed(query) and len(self.path_args) == 2:
            values = {name: raw[-1].decode("utf-8", "surrogateescape") for name, raw in query.items()}
            now = self.application.settings["clock"]()
            try:
                grant = signing.verify(self.keyring, values, self.path_args[0], self.path_args[1], now)
            except signing.SignatureExpired:
                raise ApiError("signature_expired", "the signed URL has expired") from None
            except signing.SignatureInvalid:
                raise ApiError("signature_invalid", "the signed URL does not hold") from None
            check_grant(grant, rule)
            self.grant = grant
            return
        if rule.public and bucket is not None and await self._public(bucket):
            return
        raise unauthorized("this request needs a key: X-API-Key or Authorization: Bearer")

    async def _public(self, bucket: str) -> bool:
        try:
            record = await self.call(self.store.get_bucket, bucket, counted=False)
        except ApiError:
            return False  # no such bucket: the same 401 as a private one
        return record.public

    def authorize(self, need: Access, bucket: str) -> None:
        """For a bucket named in the body: raise 403 unless the request's key may `need` on it."""
        if self.key is not None and not self.key.may(need, bucket):
            raise forbidden(self.key)

    def set_default_headers(self) -> None:
        # Also run by Tornado before initialize (no config yet): initialize runs it again.
        config: Settings | None = getattr(self, "config", None)
        if config is None:
            return
        if config.cors_origins:
            self.set_header("Vary", "Origin")  # the answer depends on it, for caches too
        origin = cors_origin(config.cors_origins, self.request.headers.get("Origin"))
        if origin is not None:
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Expose-Headers", CORS_EXPOSED)

    async def options(self, *_args: str) -> None:
        """A CORS preflight, when the origin is allowed; 405 otherwise, as before CORS."""
        origin = cors_origin(self.config.cors_origins, self.request.headers.get("Origin"))
        if origin is None or "Access-Control-Request-Method" not in self.request.headers:
            raise HTTPError(405)
        self.set_header("Access-Control-Allow-Methods", ", ".join(self.allowed_methods()))
        self.set_header("Access-Control-Allow-Headers", CORS_HEADERS)
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    def _track(self, active: bool) -> None:
        in_flight: set[RequestHandler] = self.application.settings["in_flight"]
        if active:
            in_flight.add(self)
        else:
            in_flight.discard(self)
        telemetry.set_in_flight(len(in_flight))  # never raises: metrics must not fail a request

    def on_finish(self) -> None:
        self._track(False)

    def on_connection_close(self) -> None:
        self._track(False)
        super().on_connection_close()

    @classmethod
    def allowed_methods(cls) -> list[str]:
        """The methods this handler implements (for Allow on a 405)."""
        return [
            m
            for m in cls.SUPPORTED_METHODS
            if m != "OPTIONS" and getattr(cls, m.lower()) is not getattr(RequestHandler, m.lower())
        ]

    def compute_etag(self) -> str | None:
        return None  # JSON answers are not cached; downloads set their own strong ETag

    def write(self, chunk: str | bytes | dict[str, Any]) -> None:
        if isinstance(chunk, bytes):
            self.bytes_out += len(chunk)
        super().write(chunk)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call in a worker thread, turning its errors into ApiErrors."""
        with client_errors():
            return await IOLoop.current().run_in_executor(None, functools.partial(fn, *args, **kwargs))

    def parse(self, model: type[M]) -> M:
        """The JSON body as `model`; 422 when it does not parse or fit."""
        self.bytes_in = len(self.request.body or b"")
        try:
            return model.model_validate_json(self.request.body or b"")
        except ValidationError as exc:
            raise ApiError("validation_error", _problems(exc)) from None

    def parse_query(self, model: type[M]) -> M:
        """The query string as `model`; 422 when it does not fit. Values are taken as sent (Tornado's
        get_argument would strip spaces and drop control characters)."""
        try:
            values = {name: raw[-1].decode("utf-8") for name, raw in self.request.query_arguments.items()}
        except UnicodeDecodeError:
            raise ApiError("validation_error", "the query string is not UTF-8") from None
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            raise ApiError("validation_error", _problems(exc)) from None

    def send_json(self, body: BaseModel | list[Any], status: int = 200) -> None:
        self.set_status(status)
        self.set_header("Content-Type", JSON)
        if isinstance(body, list):
            self.finish(b"[" + b",".join(b.model_dump_json().encode() for b in body) + b"]")
        else:
            self.finish(body.model_dump_json().encode())

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ApiError):
            body = ErrorBody(detail=exc.detail, code=exc.code)
            for name, value in exc.headers.items():
                self.set_header(name, value)
        else:
            reason = self._reason if status_code != 500 else "internal server error"
            body = ErrorBody(detail=reason, code=code_for_status(status_code))
        if status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.set_header("Content-Type", JSON)
        self.finish(body.model_dump_json().encode())


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors(include_url=False)
    )
