"""What every native handler shares: the JSON error shape, store calls off the event loop,
request parsing, and the operation descriptions the OpenAPI document is built from."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ValidationError
from tornado.ioloop import IOLoop
from tornado.web import RequestHandler

from .. import telemetry
from ..settings import Settings
from ..store.contract import Store
from .errors import ApiError, api_error, code_for_status
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

    def initialize(self, store: Store, config: Settings, route: str) -> None:
        self.store = store
        self.config = config
        self.route = route
        self.bytes_in = 0
        self.bytes_out = 0
        self._track(True)

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
            if getattr(cls, m.lower()) is not getattr(RequestHandler, m.lower())
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
