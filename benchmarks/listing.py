"""List a bucket of N files (default 100,000) page by page through a running worker; print the
time per page and the worker's peak RSS, to show a listing never loads the whole tree.

    python benchmarks/listing.py [N] [FILES_PER_FOLDER]
"""

from __future__ import annotations

import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from run import children  # noqa: E402
from storage_server.blobfs import BlobStore  # noqa: E402
from tests.service import free_port, memory_kib  # noqa: E402


def fill(store: BlobStore, count: int, per_folder: int) -> None:
    store.create_bucket("bench", public=False, description=None)
    for i in range(count):
        upload = store.begin_upload("bench", f"f{i // per_folder:04d}/{i:07d}.txt")
        upload.write(b"x")
        upload.commit(content_type="text/plain", name="x.txt")


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    per_folder = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        store = BlobStore(data, fsync=False)
        store.prepare()
        start = time.perf_counter()
        fill(store, count, per_folder)
        print(f"stored {count} files in {time.perf_counter() - start:.1f} s")
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), "--workers", "1", "--port", str(port), "--path", str(data),
             "--access-log", "off", "--log-level", "WARNING"],
            start_new_session=True,
        )  # fmt: skip
        try:
            while not children(proc.pid):
                time.sleep(0.05)
            time.sleep(1)
            worker = children(proc.pid)[0]
            before = memory_kib(worker, "VmRSS")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            times, listed, cursor = [], 0, None
            while True:
                query = f"?limit=1000&cursor={cursor}" if cursor else "?limit=1000"
                started = time.perf_counter()
                conn.request("GET", f"/api/v1/buckets/bench/files{query}")
                page = json.loads(conn.getresponse().read())
                times.append(time.perf_counter() - started)
                listed += len(page["files"])
                cursor = page["next_cursor"]
                if cursor is None:
                    break
            peak = memory_kib(worker, "VmHWM")
            print(f"listed {listed} files in {len(times)} pages of 1000")
            print(
                f"page time: median {statistics.median(times) * 1000:.0f} ms, "
                f"max {max(times) * 1000:.0f} ms; total {sum(times):.1f} s"
            )
            print(f"worker RSS: {before / 1024:.1f} MiB before, peak {peak / 1024:.1f} MiB")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
