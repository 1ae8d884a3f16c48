"""Idle memory of the whole process group, storage_server against nginx (docs/performance.md).

    python benchmarks/idle.py               # 2 workers each, defaults, a fresh temp storage path
    python benchmarks/idle.py --json out.json

Starts `run.py` (supervisor and 2 workers, default settings) and nginx (master and 2 workers) on
free 127.0.0.1 ports, waits until both answer, lets them settle, and prints the RSS and PSS summed
over each group. PSS splits a page shared by N processes N ways, so it is the fairer sum for forked
workers that share pages copy-on-write. Target: the group's RSS at most 4 x nginx's.

From another script: `idle_memory()` starts both and returns both groups' figures and the ratios;
`measure_group(pids)` measures any set of processes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.servers import Server, process_group, status_kib  # noqa: E402

MiB = 1 << 20
TARGET = 4.0  # the group's RSS at most this many times nginx's
SETTLE = 2.0  # seconds both servers sit idle before they are measured


def measure_group(pids: list[int]) -> dict[str, float]:
    """The RSS and PSS (from /proc/<pid>/smaps_rollup) summed over `pids`, in MiB."""
    rss = sum(status_kib(pid, "Rss", "smaps_rollup") for pid in pids)
    pss = sum(status_kib(pid, "Pss", "smaps_rollup") for pid in pids)
    return {"processes": len(pids), "rss_mib": round(rss / 1024, 1), "pss_mib": round(pss / 1024, 1)}


class IdleStorage(Server):
    """run.py as `make run` starts it (defaults but port, path and worker count), until stopped."""

    name = "storage_server"

    def __init__(self, data: Path, workers: int) -> None:
        super().__init__(data.parent, workers)
        args = ["--workers", str(workers), "--port", str(self.port), "--path", str(data)]
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("STORAGE_")},
        )


def storage_idle(tmp: Path, workers: int = 2, settle: float = SETTLE) -> dict[str, float]:
    """Start storage_server in `tmp`, let it sit idle, and measure its whole group."""
    server = IdleStorage(tmp / "storage", workers)
    try:
        server.wait()
        time.sleep(settle)
        return measure_group(process_group(server.proc.pid))
    finally:
        server.stop()


def nginx_idle(tmp: Path, workers: int = 2, settle: float = SETTLE) -> dict[str, float]:
    """Start nginx (installed from Debian's packages when missing) in `tmp`, and measure it idle."""
    from benchmarks.bench import Nginx, ensure_tools  # here, so that bench.py may import this module

    ensure_tools()
    server = Nginx(tmp, workers)
    try:
        time.sleep(settle)
        return measure_group(process_group(server.proc.pid))
    finally:
        server.stop()


def idle_memory(workers: int = 2, settle: float = SETTLE) -> dict[str, Any]:
    """Both servers' idle groups, one after the other, and the ratios of storage_server to nginx:
    {"storage_server": {...}, "nginx": {...}, "rss_ratio", "pss_ratio", "target", "met"}."""
    with tempfile.TemporaryDirectory(prefix="idle-") as tmp:
        ours = storage_idle(Path(tmp), workers, settle)
        theirs = nginx_idle(Path(tmp), workers, settle)
    rss_ratio = ours["rss_mib"] / theirs["rss_mib"]
    return {
        "storage_server": ours,
        "nginx": theirs,
        "rss_ratio": round(rss_ratio, 2),
        "pss_ratio": round(ours["pss_mib"] / theirs["pss_mib"], 2),
        "target": f"<= {TARGET:g} x nginx",
        "met": rss_ratio <= TARGET,
    }


def table(result: dict[str, Any]) -> str:
    ours, theirs = result["storage_server"], result["nginx"]
    verdict = "met" if result["met"] else "NOT met"
    return "\n".join(
        [
            "| idle, whole group | storage_server | nginx | ratio | target |  |",
            "|---|---|---|---|---|---|",
            f"| RSS MiB | {ours['rss_mib']} | {theirs['rss_mib']} | {result['rss_ratio']} "
            f"| {result['target']} | {verdict} |",
            f"| PSS MiB | {ours['pss_mib']} | {theirs['pss_mib']} | {result['pss_ratio']} | (report) |  |",
            f"| processes | {ours['processes']} | {theirs['processes']} |  |  |  |",
        ]
    )


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--settle", type=float, default=SETTLE, help="seconds idle before measuring")
    parser.add_argument("--json", type=Path, help="write the figures there too")
    args = parser.parse_args(argv)
    result = idle_memory(args.workers, args.settle)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(cli())
