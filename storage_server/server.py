"""One worker process: the HTTP server around the app, its own SO_REUSEPORT socket, recovery and
the periodic temp sweep, and a graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from concurrent.futures import ThreadPoolExecutor

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from . import telemetry
from .backends import open_store, threads_for
from .handlers import make_app
from .notify import notify
from .settings import Settings
from .store.contract import Store
from .store.errors import StorageError

log = logging.getLogger("storage_server")

JSON_BODY_LIMIT = 1024 * 1024  # bucket bodies; file uploads lift it per request
BODY_CHUNK = 1024 * 1024  # most bytes read from the socket per data_received call
SWEEP_EVERY = 60.0


def make_server(config: Settings, store: Store) -> HTTPServer:
    """An HTTPServer for the app, with the connection limits taken from the settings."""
    return HTTPServer(
        make_app(config, store),
        idle_connection_timeout=config.idle_timeout,
        max_body_size=JSON_BODY_LIMIT,
        chunk_size=BODY_CHUNK,
    )


def in_flight(server: HTTPServer) -> int:
    """Requests the server's app has begun and not yet finished."""
    app = server.request_callback
    assert isinstance(app, Application)
    return len(app.settings["in_flight"])


async def serve(config: Settings) -> None:
    """Run one worker until SIGTERM or SIGINT, then drain in-flight requests and return."""
    store = open_store(config)
    store.register_worker()
    try:
        server = make_server(config, store)
        server.add_sockets(bind_sockets(config.port, config.host, reuse_port=True))
        loop = asyncio.get_running_loop()
        if (threads := threads_for(config)) is not None:
            loop.set_default_executor(ThreadPoolExecutor(threads, thread_name_prefix="store"))
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        upkeep = asyncio.create_task(_upkeep(store))
        log.info("worker listening on %s:%d", config.host, config.port)
        notify(f"READY=1\nSTATUS=listening on {config.host}:{config.port}")
        await stop.wait()
        for signum in (signal.SIGTERM, signal.SIGINT):  # a second signal must not cut the drain short
            loop.remove_signal_handler(signum)
            signal.signal(signum, signal.SIG_IGN)

        server.stop()  # no new connections; requests already in flight go on
        upkeep.cancel()
        deadline = loop.time() + config.shutdown_timeout
        while in_flight(server) and loop.time() < deadline:  # noqa: ASYNC110 (the count lives in handlers)
            await asyncio.sleep(0.05)
        if in_flight(server):
            log.warning("stopping with %d requests still in flight", in_flight(server))
        await asyncio.wait_for(server.close_all_connections(), timeout=5)
    finally:
        store.unregister_worker()


async def _upkeep(store: Store) -> None:
    """Recount buckets after a worker died, and remove the temp files dead workers left."""
    dead = await asyncio.to_thread(store.recover)
    if dead:
        telemetry.forget(dead)
        log.warning("recounted bucket stats after workers %s died", dead)
    while True:
        try:
            removed = await asyncio.to_thread(store.sweep)
            if removed:
                log.info("removed %d stale temp entries", removed)
        except (OSError, StorageError):  # the disk or the object store: try again next time
            log.exception("temp sweep failed")
        await asyncio.sleep(SWEEP_EVERY)
