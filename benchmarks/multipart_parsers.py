"""Compare streaming multipart parsers on the two shapes the service sees: one huge file part and
many small parts. Prints MB/s per parser and whether it notices a truncated body.

    pip install python-multipart streaming-form-data && python benchmarks/multipart_parsers.py [MiB]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator

BOUNDARY = b"----storageserverbench"
CHUNK = 256 * 1024


def big_body(mib: int) -> tuple[bytes, bytes, int]:
    head = (
        b"--" + BOUNDARY + b"\r\n"
        b'Content-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    return head, b"\r\n--" + BOUNDARY + b"--\r\n", mib * 1024 * 1024


def chunks(head: bytes, tail: bytes, size: int, block: bytes) -> Iterator[bytes]:
    yield head
    left = size
    while left > 0:
        piece = block[: min(len(block), left)]
        left -= len(piece)
        yield piece
    yield tail


def small_parts(count: int) -> bytes:
    parts = []
    for i in range(count):
        parts.append(
            b"--"
            + BOUNDARY
            + b"\r\n"
            + f'Content-Disposition: form-data; name="f{i}"\r\n\r\n'.encode()
            + b"x" * 100
        )
    return b"\r\n".join(parts) + b"\r\n--" + BOUNDARY + b"--\r\n"


def run_multipart(feed: Iterator[bytes]) -> int:
    from multipart import MultipartSegment, PushMultipartParser

    total = 0
    parser = PushMultipartParser(BOUNDARY, max_segment_count=10**9)
    for chunk in feed:
        for event in parser.parse(chunk):
            if not isinstance(event, MultipartSegment) and event is not None:
                total += len(event)
    for _ in parser.parse(b""):
        pass
    parser.close(check_complete=True)
    return total


def run_python_multipart(feed: Iterator[bytes]) -> int:
    from python_multipart.multipart import MultipartParser

    state = {"total": 0, "ended": False}

    def on_data(data: bytes, start: int, end: int) -> None:
        state["total"] += end - start

    def on_end() -> None:
        state["ended"] = True

    parser = MultipartParser(BOUNDARY, {"on_part_data": on_data, "on_end": on_end})
    for chunk in feed:
        parser.write(chunk)
    parser.finalize()
    if not state["ended"]:
        raise ValueError("truncated body (on_end never fired)")
    return state["total"]


def run_streaming_form_data(feed: Iterator[bytes]) -> int:
    from streaming_form_data import StreamingFormDataParser
    from streaming_form_data.targets import NullTarget

    class Counting(NullTarget):  # type: ignore[misc]
        total = 0

        def on_data_received(self, chunk: bytes) -> None:
            Counting.total += len(chunk)

    parser = StreamingFormDataParser(
        headers={"Content-Type": "multipart/form-data; boundary=" + BOUNDARY.decode()}
    )
    parser.register("file", Counting())
    for chunk in feed:
        parser.data_received(chunk)
    return Counting.total


PARSERS: dict[str, Callable[[Iterator[bytes]], int]] = {
    "multipart (PushMultipartParser)": run_multipart,
    "python-multipart": run_python_multipart,
    "streaming-form-data": run_streaming_form_data,
}


def main() -> None:
    mib = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    head, tail, size = big_body(mib)
    block = bytes(range(256)) * (CHUNK // 256)
    small = small_parts(20_000)
    print(f"{'parser':34} {'1 file part MB/s':>16} {'20k small parts MB/s':>21} {'truncation':>11}")
    for name, run in PARSERS.items():
        try:
            start = time.perf_counter()
            run(chunks(head, tail, size, block))
            big = size / (time.perf_counter() - start) / 1e6
            start = time.perf_counter()
            run(iter([small[i : i + CHUNK] for i in range(0, len(small), CHUNK)]))
            many = len(small) / (time.perf_counter() - start) / 1e6
        except ImportError:
            print(f"{name:34} not installed")
            continue
        try:
            run(iter([head, block[:1000]]))
            truncation = "missed"
        except Exception:
            truncation = "raises"
        print(f"{name:34} {big:16.0f} {many:21.1f} {truncation:>11}")


if __name__ == "__main__":
    main()
