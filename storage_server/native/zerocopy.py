"""Zero-copy downloads: once the headers are out, the body of a file on local disk goes from the
page cache to the socket in the kernel (sendfile(2)), a few MiB per trip to a thread, with a turn
of the event loop in between, as the userspace path does."""

from __future__ import annotations

import asyncio
import errno
import os
from typing import Protocol

from tornado.http1connection import HTTP1Connection
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError

GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN, errno.ESHUTDOWN)
STEP = 4 * 1024 * 1024  # most bytes one sendfile call may send


class OnDisk(Protocol):
    """A reader whose bytes are a local file (the filesystem store's)."""

    offset: int  # the position of its next byte

    def fileno(self) -> int: ...


def on_disk(reader: object) -> OnDisk | None:
    """The reader as an OnDisk one, if it is (an attribute look, much cheaper per request than
    isinstance against a runtime-checkable Protocol)."""
    return reader if callable(getattr(reader, "fileno", None)) else None  # type: ignore[return-value]


async def send_file(connection: HTTP1Connection, fd: int, offset: int, length: int) -> int:
    """Send `length` bytes of `fd` from `offset` as the rest of the response body; return how many
    went out. Raises StreamClosedError when the client goes away.

    The socket is non-blocking: sendfile sends what fits and returns. When the socket's buffer
    is full, the event loop watches our own descriptor of the socket until there is room, then
    sendfile goes on.
    """
    stream = connection.stream
    assert isinstance(stream, IOStream)
    # A descriptor of our own: Tornado closes its own when the client goes away, maybe while a
    # sendfile runs in a thread, and the number could be reused by another file meanwhile.
    sock = os.dup(stream.socket.fileno())
    try:
        return await _send(connection, stream, sock, fd, offset, length)
    finally:
        os.close(sock)


async def _send(
    connection: HTTP1Connection, stream: IOStream, sock: int, fd: int, offset: int, length: int
) -> int:
    loop = IOLoop.current()
    sent = 0
    while length > 0:
        if stream.closed():
            raise StreamClosedError()
        step = min(STEP, length)
        try:
            done = await loop.run_in_executor(None, os.sendfile, sock, fd, offset, step)
        except BlockingIOError:
            done = 0
        except OSError as exc:
            if exc.errno in GONE:
                raise StreamClosedError(real_error=exc) from None
            raise
        if done == 0 and offset >= os.fstat(fd).st_size:
            raise OSError("the file ended early")  # files are never written in place
        offset, length, sent = offset + done, length - done, sent + done
        # Tornado checks the body it saw against Content-Length when the response finishes; these
        # bytes went around it (a private counter of HTTP1Connection, Tornado 6.6).
        if connection._expected_content_remaining is not None:
            connection._expected_content_remaining -= done
        if done < step:
            await _writable(stream, sock)  # the socket's buffer is full: wait until it drains
        else:
            await asyncio.sleep(0)  # one fast download must not starve the worker's other requests
    return sent


async def _writable(stream: IOStream, sock: int) -> None:
    """Wait until the socket has room (or the client goes away). Our own descriptor is watched,
    not Tornado's, so its registration in the event loop is left alone."""
    loop = asyncio.get_running_loop()
    room: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not room.done():
            room.set_result(None)

    loop.add_writer(sock, ready)
    try:
        while not room.done():
            if stream.closed():
                raise StreamClosedError()
            # A client that stops reading for good is dropped by the idle timeout, which closes
            # Tornado's stream: look again now and then.
            await asyncio.wait([room], timeout=1.0)
    finally:
        loop.remove_writer(sock)
