"""One worker process: the HTTP server around the app, its own SO_REUSEPORT socket, recovery and
the periodic temp sweep, background scrub passes when they are on, and a graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.web import Application

from . import scrub, telemetry
from .auth.keyring import Keyring, KeysFileError
from .backends import open_store, threads_for
from .handlers import make_app
from .notify import notify
from .settings import Settings
from .store.contract import Store
from .store.errors import StorageError
from .store.records import Damage, now

log = logging.getLogger("storage_server")

JSON_BODY_LIMIT = 1024 * 1024  # bucket bodies; file uploads lift it per request
BODY_CHUNK = 1024 * 1024  # most bytes read from the socket per data_received call
SWEEP_EVERY = 60.0
SCRUB_LOOK_EVERY = 60.0  # seconds between two looks at whether a background scrub pass is due
# A pass may take hours: it gets a thread of its own, not one of the requests' executor.
SCRUB_THREAD = ThreadPoolExecutor(1, thread_name_prefix="scrub")


def make_server(config: Settings, store: Store, keyring: Keyring | None = None) -> HTTPServer:
    """An HTTPServer for the app, with the connection limits taken from the settings (and the
    keys of config.keys_file unless `keyring` is given)."""
    return HTTPServer(
        make_app(config, store, keyring),
        idle_connection_timeout=config.idle_timeout,
        max_body_size=JSON_BODY_LIMIT,
        chunk_size=BODY_CHUNK,
    )


def make_s3_server(config: Settings, store: Store, keyring: Keyring) -> HTTPServer:
    """An HTTPServer for the S3 endpoint (docs/s3.md), with the same limits as the native one."""
    from .s3api.app import make_s3_app  # only when the endpoint is on: a worker without it saves the memory

    return HTTPServer(
        make_s3_app(config, store, keyring),
        idle_connection_timeout=config.idle_timeout,
        max_body_size=JSON_BODY_LIMIT,
        chunk_size=BODY_CHUNK,
        xheaders=False,
    )


def in_flight(*servers: HTTPServer) -> int:
    """Requests the servers' apps have begun and not yet finished."""
    count = 0
    for server in servers:
        app = server.request_callback
        assert isinstance(app, Application)
        count += len(app.settings["in_flight"])
    return count


_reload_pending = False


def reload_when_serving() -> None:
    """A SIGHUP that reached this worker before it could act on it: reload once it serves."""
    global _reload_pending
    _reload_pending = True


async def serve(config: Settings, keyring: Keyring) -> None:
    """Run one worker with `keyring` (the supervisor's, read before the fork: a worker that
    replaces a dead one never depends on the file being readable now) until SIGTERM or SIGINT,
    then drain in-flight requests and return. SIGHUP reloads the keys file."""
    store = open_store(config)
    store.register_worker()
    try:
        server = make_server(config, store, keyring)
        server.add_sockets(bind_sockets(config.port, config.host, reuse_port=True))
        servers = [server]
        if config.s3_api_port:
            s3_server = make_s3_server(config, store, keyring)
            s3_server.add_sockets(bind_sockets(config.s3_api_port, config.host, reuse_port=True))
            servers.append(s3_server)
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(threads_for(config), thread_name_prefix="store"))
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload_keys, servers, config)
        if _reload_pending:
            reload_keys(servers, config)
        upkeep = asyncio.create_task(_upkeep(store))
        scrubbing = asyncio.create_task(_scrub_passes(store, config)) if config.scrub_period > 0 else None
        log.info("worker listening on %s:%d", config.host, config.port)
        notify(f"READY=1\nSTATUS=listening on {config.host}:{config.port}")
        await stop.wait()
        for signum in (signal.SIGTERM, signal.SIGINT):  # a second signal must not cut the drain short
            loop.remove_signal_handler(signum)
            signal.signal(signum, signal.SIG_IGN)

        for each in servers:
            each.stop()  # no new connections; requests already in flight go on
        upkeep.cancel()
        if scrubbing is not None:
            scrubbing.cancel()
        deadline = loop.time() + config.shutdown_timeout
        while in_flight(*servers) and loop.time() < deadline:  # noqa: ASYNC110 (the count lives in handlers)
            await asyncio.sleep(0.05)
        if in_flight(*servers):
            log.warning("stopping with %d requests still in flight", in_flight(*servers))
        for each in servers:
            await asyncio.wait_for(each.close_all_connections(), timeout=5)
    finally:
        store.unregister_worker()


def reload_keys(servers: list[HTTPServer], config: Settings) -> None:
    """SIGHUP: read the keys file again, for the native API and the S3 endpoint alike;
    connections stay open, a bad file keeps the old keys."""
    try:
        keyring = Keyring.load(config.keys_file)
    except KeysFileError as exc:
        log.error("keys not reloaded, the previous ones stay in force: %s", exc)
        return
    for server in servers:
        app = server.request_callback
        assert isinstance(app, Application)
        app.settings["keyring"] = keyring
    log.info("keys reloaded: %d", len(keyring.keys))


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


async def _scrub_passes(store: Store, config: Settings) -> None:
    """Run a background scrub pass whenever one is due (scrub.due), paced at the scrub rate; the
    store's scrub lock keeps it to one pass at a time across every worker and node. Its counts go
    to the metrics, its damage to the log."""
    stop = threading.Event()  # the pass runs in a thread: cancelling this task sets it
    scrubber = scrub.Scrubber(
        store,
        rate=config.scrub_rate * scrub.MB,
        stop=stop,
        on_verified=lambda _record, size: telemetry.scrub_verified(size),
        on_damaged=_report,
    )
    try:
        while True:
            try:
                state = await asyncio.to_thread(store.load_scrub_state)
                if scrub.due(state, config.scrub_period, now()):
                    outcome = await asyncio.get_running_loop().run_in_executor(SCRUB_THREAD, scrubber.run)
                    state = outcome.state
                    log.info("background %s", outcome.summary().removeprefix("scrub: "))
                if state.last_completed_at is not None:
                    telemetry.scrub_pass_completed(state.last_completed_at.timestamp())
            except scrub.Busy:
                pass  # another worker or node is scrubbing
            except (OSError, StorageError):
                log.exception("background scrub failed")
            await asyncio.sleep(min(config.scrub_period, SCRUB_LOOK_EVERY))
    finally:
        stop.set()


def _report(damage: Damage) -> None:
    log.error("%s (found by a background scrub; marked)", scrub.damage_line(damage))
    telemetry.scrub_damaged("scrub")
