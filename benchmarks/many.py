"""Many at once: N concurrent uploads of a big file to storage_server, then N concurrent downloads of
them, each checked against its sha256; the total MB/s each way and the workers' peak RSS growth.

The load generator streams every body from one file on disk (each upload gets its own 32-byte
tail, so the N stored files differ) and hashes downloads as they arrive: its memory stays flat
whatever N and the size.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import resource
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.servers import GiB, MiB, Storage, make_file, peak_rss_growth, request, status_kib

TAIL = 32  # bytes that make each upload's contents its own
BLOCK = 256 * 1024  # bytes per read and send, per connection
SPARE = 2 * GiB  # free space kept beyond the N files (the service's reserve, temp files, others)


def _tail(index: int) -> bytes:
    return f"many-{index:026d}\n".encode()


def _client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _all_at_once(count: int, work: Callable[[int], None], errors: list[str]) -> float:
    """Run work(0..count-1) in `count` threads released together; the seconds until the last ends.
    What a failed one raised goes to `errors`."""
    gate = threading.Barrier(count + 1)

    def each(index: int) -> None:
        gate.wait()
        try:
            work(index)
        except Exception as error:  # counted: its sha256 does not match
            errors.append(f"{index}: {error!r}")

    threads = [threading.Thread(target=each, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    gate.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    return time.perf_counter() - began


def many_at_once(server: Storage, tmp: Path, count: int, size: int) -> dict[str, Any]:
    """`count` uploads of `size` bytes at once, then `count` downloads of them at once.

    Returns {"skipped": reason} when the disk holding `tmp` has not room for them all."""
    needed, free = count * size + SPARE, shutil.disk_usage(tmp).free
    if free < needed:
        reason = f"skipped: needs {needed / GiB:.1f} GiB free, {free / GiB:.1f} available"
        return {"count": count, "size": size, "skipped": reason}
    source = make_file(tmp / "many.bin", size - TAIL)
    prefix = hashlib.sha256()
    with source.open("rb") as src:
        while block := src.read(MiB):
            prefix.update(block)
    expected = []
    for index in range(count):
        digest = prefix.copy()
        digest.update(_tail(index))
        expected.append(digest.hexdigest())
    answered: list[str | None] = [None] * count
    downloaded: list[str | None] = [None] * count

    def connection() -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", server.port, timeout=900, blocksize=BLOCK)

    def body(index: int) -> Iterator[bytes]:
        with source.open("rb") as src:
            while block := src.read(BLOCK):
                yield block
        yield _tail(index)

    def upload(index: int) -> None:
        conn = connection()
        headers = {**server.headers, "Content-Length": str(size), "Content-Type": "application/octet-stream"}
        conn.request("PUT", f"{server.prefix}many/{index}.bin", body=body(index), headers=headers)
        response = conn.getresponse()
        answer = response.read()
        conn.close()
        if response.status != 201:
            raise RuntimeError(f"upload {index} answered {response.status}: {answer[:200]!r}")
        answered[index] = json.loads(answer)["file"]["sha256"]

    def download(index: int) -> None:
        conn = connection()
        conn.request("GET", f"{server.prefix}many/{index}.bin", headers=server.headers)
        response = conn.getresponse()
        digest, buffer = hashlib.sha256(), bytearray(BLOCK)
        view = memoryview(buffer)
        while read := response.readinto(buffer):
            digest.update(view[:read])
        conn.close()
        if response.status == 200:
            downloaded[index] = digest.hexdigest()

    figures: dict[str, Any] = {"count": count, "size": size, "errors": []}
    me = os.getpid()
    Path(f"/proc/{me}/clear_refs").write_text("5")  # reset this process's VmHWM
    rss_before = status_kib(me, "VmRSS")
    try:
        seconds: dict[str, float] = {}
        cpu: dict[str, float] = {}

        def phase(name: str, work: Callable[[int], None]) -> Callable[[], None]:
            def run() -> None:
                began = _client_cpu()
                seconds[name] = _all_at_once(count, work, figures["errors"])
                cpu[name] = _client_cpu() - began

            return run

        figures["rss_growth_upload_mib"] = peak_rss_growth(server, phase("upload", upload))
        os.sync()  # the downloads start from a clean page cache state, as the other rows do
        figures["rss_growth_download_mib"] = peak_rss_growth(server, phase("download", download))
        figures["upload_mbps"] = count * size / seconds["upload"] / 1e6
        figures["download_mbps"] = count * size / seconds["download"] / 1e6
        figures["client_cpu_s"] = cpu
    finally:
        for index in range(count):
            request(server, "DELETE", f"many/{index}.bin")
        source.unlink()
    figures["client_rss_growth_mib"] = (status_kib(me, "VmHWM") - rss_before) / 1024
    figures["sha256_matched"] = sum(
        1 for want, told, got in zip(expected, answered, downloaded, strict=True) if want == told == got
    )
    return figures
