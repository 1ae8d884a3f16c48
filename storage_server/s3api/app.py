"""The S3 endpoint's Tornado application (make_s3_app): one handler for every path."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tornado.web import Application

from .. import telemetry
from ..auth.keyring import Keyring
from ..settings import Settings
from ..store.contract import Store
from .router import S3Endpoint


def make_s3_app(
    config: Settings, store: Store, keyring: Keyring, clock: Callable[[], float] = time.time
) -> Application:
    """The S3 application over `store`, checking signatures against `keyring` (replaced in its
    settings on SIGHUP, as the native app's)."""
    in_flight: set[Any] = set()
    return Application(
        [(r"/.*", S3Endpoint, {"store": store, "config": config})],
        in_flight=in_flight,
        keyring=keyring,
        clock=clock,
        log_function=lambda handler: telemetry.record(handler, config.access_log),
    )
