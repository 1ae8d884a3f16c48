"""storage_server side by side with nginx, on the same files, in one run (docs/performance.md).

    make bench                                          # full run: 1 GiB files, 3 rounds, 64 x 256 MiB
    python benchmarks/bench.py --smoke --json out.json  # a few MiB, one round (what CI runs)

Starts both servers on free 127.0.0.1 ports (nginx and wrk come from Debian's packages when
missing), alternates them round by round, prints one table (each row: ours, nginx's, the ratio,
the target, met or not) and writes the raw results as JSON. The servers live in servers.py, the
measurements in rows.py and many.py, the table in report.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.many import many_at_once  # noqa: E402
from benchmarks.report import table  # noqa: E402
from benchmarks.rows import (  # noqa: E402
    curl,
    fairness,
    median_spread,
    memory,
    put_script,
    transfers,
    ttfb,
    tus_upload,
    wrk,
)
from benchmarks.servers import (  # noqa: E402
    GiB,
    KiB,
    MiB,
    Nginx,
    Server,
    Storage,
    ensure_tools,
    idle_group_memory,
    make_file,
    request,
)
from tests.service import free_port  # noqa: E402

# What other benchmarks (backends.py, s3.py) take from here.
__all__ = [
    "FULL", "SMOKE", "GiB", "KiB", "MiB", "Nginx", "Scale", "Server", "Storage", "cli", "curl",
    "ensure_tools", "free_port", "make_file", "median_spread", "memory", "put_script", "request",
    "run", "transfers", "ttfb", "wrk",
]  # fmt: skip


@dataclass(frozen=True)
class Scale:
    big: int  # the large file, up and down
    memory: int  # bytes moved each way while RSS is watched
    rounds: int
    wrk_seconds: int
    ttfb_requests: int  # per client, 20 clients
    many: int = 64  # uploads at once, then as many downloads
    many_size: int = 256 * MiB  # bytes each


FULL = Scale(big=GiB, memory=5 * GiB, rounds=3, wrk_seconds=10, ttfb_requests=50)
SMOKE = Scale(big=8 * MiB, memory=32 * MiB, rounds=1, wrk_seconds=2, ttfb_requests=5, many=8, many_size=MiB)


def run(scale: Scale, workers: int) -> dict[str, Any]:
    ensure_tools()
    results: dict[str, Any] = {"scale": scale.__dict__, "workers": workers, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="storage-bench-") as tmp_name:
        tmp = Path(tmp_name)
        big = make_file(tmp / "big.bin", scale.big)
        storage, nginx = Storage(tmp, workers, fsync=True), Nginx(tmp, workers)
        servers: list[Server] = [storage, nginx]
        try:
            idle = {server.name: idle_group_memory(server) for server in servers}  # before any work
            for server in servers:
                for name, size in (("4k.bin", 4 * KiB), ("64k.bin", 64 * KiB), ("1m.bin", MiB)):
                    assert request(server, "PUT", name, os.urandom(size)) in (200, 201, 204)
            rounds: dict[str, list[dict[str, float]]] = {s.name: [] for s in servers}
            for _ in range(scale.rounds):
                for server in servers:  # A B A B ...
                    figures: dict[str, float] = {}
                    transfers(server, big, figures)
                    rounds[server.name].append(figures)
            for server in servers:
                summary: dict[str, Any] = {
                    k: median_spread([r[k] for r in rounds[server.name]]) for k in rounds[server.name][0]
                }
                summary["idle"] = idle[server.name]
                summary.update(ttfb(server, "1m.bin", 20, scale.ttfb_requests))
                for small, length in (("4k", 4 * KiB), ("64k", 64 * KiB)):
                    summary[f"get_{small}"] = wrk(server, scale.wrk_seconds, server.url(f"{small}.bin"))
                    script = put_script(tmp, server, length)
                    summary[f"put_{small}"] = wrk(server, scale.wrk_seconds, server.url("x"), script)
                summary["fairness_download"] = fairness(server, big, with_upload=False)
                summary["fairness"] = fairness(server, big, with_upload=True)
                results[server.name] = summary
            ours = results["storage_server"]
            ours["memory"] = memory(storage, scale.memory)
            ours["tus_upload_mbps"] = tus_upload(storage, big)
            ours["many"] = many_at_once(storage, tmp, scale.many, scale.many_size)
            storage.stop()
            # Uploads without fsync, and (downloads do not depend on it) downloads without sendfile.
            unsynced = Storage(tmp / "nofsync", workers, fsync=False, extra=("--no-sendfile",))
            servers.append(unsynced)
            figures = {}
            transfers(unsynced, big, figures)
            ours["upload_raw_mbps_no_fsync"] = figures["upload_raw_mbps"]
            ours["download_mbps_no_sendfile"] = figures["download_mbps"]
            ours["cpu_s_per_gib_down_no_sendfile"] = figures["cpu_s_per_gib_down"]
            unsynced.stop()
            # The cost of checking a key on every request: the same small GETs, keys configured.
            keyed = Storage(tmp / "keyed", workers, fsync=True, api_key="bench-secret-0123456789")
            servers.append(keyed)
            assert request(keyed, "PUT", "4k.bin", os.urandom(4 * KiB)) in (200, 201)
            ours["get_4k_with_key"] = wrk(keyed, scale.wrk_seconds, keyed.url("4k.bin"))
            assert ours["get_4k_with_key"]["non_2xx"] == 0, "the key was refused"
        finally:
            for server in servers:
                server.stop()
    return results


def cli(
    doc: str, run_at: Callable[[Scale, int], dict[str, Any]], report: Callable[[dict[str, Any]], str]
) -> None:
    """A benchmark's command line: --smoke, --workers, --json; prints its table."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few MiB and one round (CI)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    results = run_at(SMOKE if args.smoke else FULL, args.workers)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    cli(__doc__, run, table)
