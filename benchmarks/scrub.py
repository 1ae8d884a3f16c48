"""How fast a scrub pass checks a store: fill one with files, then run `python run.py scrub` with
the rate limit out of the way and print its summary (docs/bitrot.md has the last figures).

    python benchmarks/scrub.py fs 1024 1      # 1 GiB as 1 MiB files on the filesystem store
    python benchmarks/scrub.py s3 256 4       # 256 MiB as 4 MiB files on a SeaweedFS started here
    python benchmarks/scrub.py fs 160 0.015625    # 10,240 files of 16 KiB
    python benchmarks/scrub.py fs 1024 1 --cold   # drop the page cache first (root only)
    python benchmarks/scrub.py fs 512 1 --rate=100  # with STORAGE_SCRUB_RATE=100 (MB/s)

Arguments: backend, total MiB, MiB per file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage_server.backends import open_store  # noqa: E402
from storage_server.settings import Settings  # noqa: E402
from tests.seaweed import SeaweedFS, s3_env, s3_settings  # noqa: E402

MiB = 1 << 20


def fill(config: Settings, total: int, each: int) -> None:
    store = open_store(config)
    store.prepare()
    store.create_bucket("bench")
    block = os.urandom(each)
    for n in range(total // each):
        upload = store.begin_upload("bench", f"f{n // 100:03d}/{n:06d}.bin", size=each)
        try:
            upload.write(block[n % each :] + block[: n % each])  # distinct bytes per file
            upload.commit(content_type="application/octet-stream", name="x.bin")
        finally:
            upload.abort()


def main() -> None:
    backend, total, each = sys.argv[1], int(sys.argv[2]) * MiB, int(float(sys.argv[3]) * MiB)
    cold = "--cold" in sys.argv
    rate = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--rate=")), "1000000")
    with tempfile.TemporaryDirectory(prefix="storage-scrub-") as tmp:
        weed = SeaweedFS.single(Path(tmp) / "seaweedfs") if backend == "s3" else None
        try:
            env = {"STORAGE_PATH": f"{tmp}/data", "STORAGE_FSYNC": "false"}
            if weed is not None:
                env.update(s3_env(weed.endpoints[0], s3_prefix="bench/"))
            fields = s3_settings(weed.endpoints[0], s3_prefix="bench/") if weed is not None else {}
            started = time.perf_counter()
            fill(Settings(path=Path(tmp) / "data", fsync=False, **fields), total, each)
            seconds = time.perf_counter() - started
            print(f"stored {total // MiB} MiB as {total // each:,} files in {seconds:.1f} s")
            if cold:
                os.sync()
                Path("/proc/sys/vm/drop_caches").write_text("3\n")
            result = subprocess.run(
                [sys.executable, str(ROOT / "run.py"), "scrub", "--scrub-rate", rate],
                cwd=ROOT,
                env={**os.environ, **env},
                capture_output=True,
                text=True,
            )
            print(result.stderr.strip().splitlines()[-1])
            print(f"exit status {result.returncode}")
        finally:
            if weed is not None:
                weed.stop()


if __name__ == "__main__":
    main()
