"""Start the storage service: check the storage path, fork the workers, serve until SIGTERM.

python run.py --workers 2 --port 8000 --path ./data     (see --help; STORAGE_* env vars too)
python run.py scrub [the same flags]                    (check every stored file: docs/bitrot.md)
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import ipaddress
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType

import uvloop
from pydantic_settings import CliApp
from tornado.netutil import bind_sockets
from tornado.process import fork_processes

from storage_server import scrub, telemetry
from storage_server.auth.keyring import Keyring, KeysFileError
from storage_server.backends import open_store
from storage_server.notify import notify
from storage_server.server import reload_when_serving, serve
from storage_server.settings import Settings
from storage_server.store.errors import StorageError

log = logging.getLogger("storage_server")
MAX_RESTARTS = 1000


def children(parent: int | None = None) -> list[int]:
    """PIDs of the children of `parent` (default: this process), read from /proc."""
    me, pids = parent or os.getpid(), []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                pids.append(int(entry.name))
    return pids


def forward(signum: int, _frame: FrameType | None) -> None:
    """In the supervisor: pass the stop signal on, wait for every worker to drain, and exit.

    Waiting here, not in fork_processes, matters: it would replace a worker that a signal ends
    during the drain, and start serving again while the service stops.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    notify("STOPPING=1")
    workers = children()
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in workers:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    sys.exit(0)


class Supervisor:
    """What the supervisor keeps: its PID and the keys it hands each worker it forks."""

    pid = 0
    keys = Keyring([])
    keys_file: Path | None = None


def reload_keys(signum: int, _frame: FrameType | None) -> None:
    """SIGHUP. In the supervisor: read the keys file again (keeping the old keys if it does not
    load), for the workers it forks from now on, and pass the signal on to every worker. In a
    worker that does not serve yet: reload as soon as it does."""
    if os.getpid() != Supervisor.pid:
        reload_when_serving()
        return
    try:
        Supervisor.keys = Keyring.load(Supervisor.keys_file)
    except KeysFileError as exc:
        log.error("keys not reloaded, the previous ones stay in force: %s", exc)
    for pid in children():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGHUP)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve anywhere


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    command = args[0] if args[:1] == ["scrub"] else None
    config = CliApp.run(Settings, cli_args=args[1:] if command else args)
    logging.basicConfig(
        level=config.log_level,
        format="%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s",
    )
    if command == "scrub":
        sys.exit(scrub.main(config))
    try:
        keys = Keyring.load(config.keys_file)
    except KeysFileError as exc:
        sys.exit(f"storage_server: cannot start: {exc}")
    if config.s3_api_port and not keys.enabled:
        sys.exit("storage_server: cannot start: the S3 endpoint needs STORAGE_KEYS_FILE")
    if not keys.enabled and not is_loopback(config.host):
        log.warning(
            "no STORAGE_KEYS_FILE: anyone who can reach %s:%d can read, change and delete every file",
            config.host,
            config.port,
        )
    store = open_store(config)
    try:
        store.prepare()
        store.sweep(grace=0)  # no worker runs yet, so every temp file is a crash's leftover
        store.recover()
        for port in (config.port, config.s3_api_port):  # fail now if a port is taken
            for sock in bind_sockets(port, config.host) if port else []:
                sock.close()
    except (StorageError, OSError) as exc:
        sys.exit(f"storage_server: cannot start: {exc}")
    # Not on the storage path: the metric files are mmapped, and a write to an mmapped page of a
    # full disk kills the process (SIGBUS).
    metrics = tempfile.mkdtemp(prefix="storage-server-metrics-")
    supervisor = os.getpid()

    @atexit.register
    def remove_metrics() -> None:
        if os.getpid() == supervisor:  # workers inherit this hook; only the supervisor cleans up
            shutil.rmtree(metrics, ignore_errors=True)

    telemetry.setup(metrics)  # before the fork: every worker writes its samples there

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    Supervisor.pid, Supervisor.keys, Supervisor.keys_file = os.getpid(), keys, config.keys_file
    signal.signal(signal.SIGHUP, reload_keys)
    log.info("serving %s on %s:%d", store, config.host, config.port)
    # Returns only in a worker; a worker that dies is replaced at once, up to MAX_RESTARTS times
    # over the supervisor's life (Tornado's default, 100, is too few for a long-lived service;
    # past it the supervisor exits and systemd restarts the whole service).
    # The workers share the supervisor's imported modules copy-on-write: frozen, those objects are
    # left out of every collection, which would otherwise write to (and so copy) their pages.
    gc.collect()
    gc.freeze()
    fork_processes(config.workers, max_restarts=MAX_RESTARTS)
    uvloop.run(serve(config, Supervisor.keys))


if __name__ == "__main__":
    main()
