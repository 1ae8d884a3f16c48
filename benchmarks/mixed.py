"""The locust full mix against a fresh service, with fsync on and then off (docs/performance.md,
"Mixed load"): p50/p95/p99, count and failures per request type, and the targets.

    make bench-mixed                                     # 50 users, 2 minutes each way
    python benchmarks/mixed.py --smoke --json out.json   # 5 users, 15 s each way (the test runs it)
    python benchmarks/mixed.py --profile DIR             # and a py-spy record of each worker

Each run starts run.py (2 workers, a fresh temp storage path, access log off) on a free port and
locust headless with loadtests/locustfile.py's StorageUser, ResumableUser and BucketUser, its
files generated once on disk. mixed_locust.py, loaded beside it, splits "download" by file size.
Locust's time of a streamed download is its time to the response's headers.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.rows import percentile  # noqa: E402
from benchmarks.servers import Storage  # noqa: E402

USERS = ("StorageUser", "ResumableUser", "BucketUser")
P95_MS = 500.0  # for small uploads, small downloads and bucket reads
SMALL = {  # (method, locust's name) -> what the target calls it
    ("POST", "upload small"): "small upload",
    ("POST", "upload tiny"): "small upload",
    ("GET", "download small"): "small download",
    ("GET", "/api/v1/buckets"): "bucket read",
    ("GET", "/api/v1/buckets/loadtest"): "bucket read",
    ("GET", "get bucket"): "bucket read",
}


@dataclass(frozen=True)
class Load:
    users: int
    seconds: int
    spawn_rate: int


FULL = Load(users=50, seconds=120, spawn_rate=5)
SMOKE = Load(users=5, seconds=15, spawn_rate=5)


def _row(
    method: str, name: str, count: int, failures: int, p50: float, p95: float, p99: float
) -> dict[str, Any]:
    row: dict[str, Any] = {"type": method, "name": name, "count": count, "failures": failures}
    row.update(p50_ms=p50, p95_ms=p95, p99_ms=p99, target="0 failures", met=failures == 0)
    if (method, name) in SMALL:
        row["target"] = f"p95 < {P95_MS:g} ms, 0 failures ({SMALL[method, name]})"
        row["met"] = failures == 0 and p95 < P95_MS
    return row


def read_stats(prefix: Path, sizes: Path) -> list[dict[str, Any]]:
    """One row per request type from locust's CSV, the split downloads after "download"."""
    split: dict[str, Any] = json.loads(sizes.read_text()) if sizes.exists() else {"times": {}, "failures": {}}
    rows = []
    with open(f"{prefix}_stats.csv", newline="") as stats:
        for line in csv.DictReader(stats):
            if line["Name"] == "Aggregated":
                line["Type"], line["Name"] = "", "all requests"
            rows.append(
                _row(
                    line["Type"],
                    line["Name"],
                    int(line["Request Count"]),
                    int(line["Failure Count"]),
                    *(float(line[q]) if line[q] != "N/A" else 0.0 for q in ("50%", "95%", "99%")),
                )
            )
            if line["Name"] == "download":
                for kind, times in sorted(split["times"].items()):
                    quantiles = (percentile(times, q) for q in (0.5, 0.95, 0.99))
                    rows.append(_row("GET", kind, len(times), split["failures"].get(kind, 0), *quantiles))
    return rows


def _profile(
    workers: list[int], out: Path, mode: str, after: float, seconds: int
) -> list[subprocess.Popen[bytes]]:
    """py-spy records (raw folded stacks, every thread, idle ones too) of each worker, starting
    `after` seconds from now, without pausing the workers."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.mkdir(parents=True, exist_ok=True)
    command = [spy, "record", "--nonblocking", "--idle", "--threads", "--format", "raw", "-r", "100"]
    spies = []
    for n, pid in enumerate(workers):
        args = [*command, "-d", str(seconds), "--pid", str(pid), "-o", str(out / f"{mode}-worker{n}.txt")]
        delayed = ["sh", "-c", f'sleep {after}; exec "$@"', "py-spy", *args]
        spies.append(subprocess.Popen(delayed, stdout=subprocess.DEVNULL))
    return spies


def _cpu_ticks() -> list[int]:
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


def _schedstat(pids: list[int]) -> dict[int, tuple[int, int]]:
    """Per thread of `pids`: nanoseconds on a CPU and waiting in a run queue (for a CPU)."""
    found = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                ran, waited, _slices = (int(x) for x in (task / "schedstat").read_text().split())
                found[int(task.name)] = (ran, waited)
    return found


def _machine(before: list[int], after: list[int]) -> dict[str, float]:
    """Shares of the machine's CPU time between two /proc/stat readings, in %."""
    spent = [
        b - a for a, b in zip(before, after, strict=True)
    ]  # user nice system idle iowait irq softirq steal
    total = sum(spent) or 1
    return {
        "busy_pct": 100 * (total - spent[3] - spent[4]) / total,
        "iowait_pct": 100 * spent[4] / total,
        "steal_pct": 100 * spent[7] / total,
    }


def run_mix(load: Load, fsync: bool, workers: int, tmp: Path, profile: Path | None) -> dict[str, Any]:
    """One locust run of the mix against a fresh service; its rows and the load before it."""
    mode = "fsync-on" if fsync else "fsync-off"
    server = Storage(tmp / mode, workers, fsync=fsync)
    spies: list[subprocess.Popen[bytes]] = []
    try:
        before = Path("/proc/loadavg").read_text().split()[:3]
        if profile is not None:  # after the users have all started, for most of the rest
            ramp = load.users / load.spawn_rate + 5
            spies = _profile(server.workers(), profile, mode, ramp, max(5, int(load.seconds - ramp - 5)))
        prefix = tmp / f"locust-{mode}"
        sizes = tmp / f"sizes-{mode}.json"
        began, ticks, threads = time.monotonic(), _cpu_ticks(), _schedstat(server.workers())
        result = subprocess.run(
            [
                sys.executable, "-m", "locust", "-f",
                f"{ROOT / 'loadtests' / 'locustfile.py'},{Path(__file__).parent / 'mixed_locust.py'}",
                "--headless", "--only-summary", "--users", str(load.users),
                "--spawn-rate", str(load.spawn_rate), "--run-time", f"{load.seconds}s",
                "--host", f"http://127.0.0.1:{server.port}", "--csv", str(prefix), *USERS,
            ],
            env={**os.environ, "LOADTEST_DIR": str(tmp / "files"), "MIXED_SIZES_OUT": str(sizes)},
            capture_output=True,
            text=True,
            timeout=load.seconds + 180,
        )  # fmt: skip
        elapsed = time.monotonic() - began
        machine = _machine(ticks, _cpu_ticks())
        after = _schedstat(server.workers())
        ran, waited = (sum(v[i] - threads.get(t, (0, 0))[i] for t, v in after.items()) / 1e9 for i in (0, 1))
        machine.update(service_cpu_s=ran, service_runqueue_wait_s=waited)
        if not Path(f"{prefix}_stats.csv").exists():
            raise RuntimeError(f"locust failed ({result.returncode}):\n{result.stderr[-3000:]}")
        with open(f"{prefix}_failures.csv", newline="") as failed:
            reasons = [
                {"type": f["Method"], "name": f["Name"], "error": f["Error"], "count": int(f["Occurrences"])}
                for f in csv.DictReader(failed)
            ]
        for spy in spies:
            spy.wait(timeout=load.seconds + 60)
        return {
            "fsync": fsync,
            "users": load.users,
            "seconds": load.seconds,
            "elapsed_s": elapsed,
            "loadavg_before": before,
            "machine": machine,
            "rows": read_stats(prefix, sizes),
            "failures": reasons,
        }
    finally:
        for spy in spies:
            if spy.poll() is None:
                spy.terminate()
        server.stop()


def run(load: Load, workers: int, profile: Path | None) -> dict[str, Any]:
    results: dict[str, Any] = {"workers": workers, "cpus": os.cpu_count(), "users": list(USERS)}
    with tempfile.TemporaryDirectory(prefix="storage-mixed-") as tmp:
        for fsync in (True, False):
            results["fsync_on" if fsync else "fsync_off"] = run_mix(load, fsync, workers, Path(tmp), profile)
    return results


def table(run: dict[str, Any]) -> str:
    """One run's rows as a Markdown table."""
    head = ("request type", "count", "failures", "p50 ms", "p95 ms", "p99 ms", "target", "")
    cells = [head]
    for row in run["rows"]:
        status = {True: "met", False: "NOT met"}[row["met"]]
        cells.append(
            (
                f"{row['type']} {row['name']}".strip(),
                f"{row['count']:,}",
                f"{row['failures']:,}",
                *(f"{row[q]:,.0f}" for q in ("p50_ms", "p95_ms", "p99_ms")),
                row["target"],
                status,
            )
        )
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def report(results: dict[str, Any]) -> str:
    parts = []
    for key in ("fsync_on", "fsync_off"):
        run = results[key]
        title = (
            f"fsync {'on' if run['fsync'] else 'off'}: {run['users']} users ({', '.join(results['users'])}), "
            f"{run['seconds']} s, {results['workers']} workers, {results['cpus']} CPUs, "
            f"load average before {' '.join(run['loadavg_before'])}"
        )
        m = run["machine"]
        during = (
            f"During it: the machine's CPU {m['busy_pct']:.1f}% busy, iowait {m['iowait_pct']:.1f}%, steal "
            f"{m['steal_pct']:.1f}%; the workers ran {m['service_cpu_s']:.1f} CPU-s and their threads waited "
            f"{m['service_runqueue_wait_s']:.1f} s for a CPU."
        )
        parts.append(f"{title}\n\n{table(run)}\n\n{during}")
        parts += [f"  {f['count']} x {f['type']} {f['name']}: {f['error']}" for f in run["failures"]]
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="5 users, 15 s each way")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--profile", type=Path, help="py-spy records of the workers go here")
    args = parser.parse_args()
    results = run(SMOKE if args.smoke else FULL, args.workers, args.profile)
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
