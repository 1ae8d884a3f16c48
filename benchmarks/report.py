"""The table benchmarks/bench.py prints: each row ours, nginx's, the ratio, the target and whether
it is met. The targets are issue #10's (performance, round 2), then the earlier ones, then figures
reported without a target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from benchmarks.servers import MiB


@dataclass(frozen=True)
class Row:
    label: str
    ours: float | str
    theirs: float | None = None
    target: str = "(report)"
    ok: bool | None = None  # None: a figure reported without a target
    status: str = ""  # said instead of met / NOT met (a skipped row's reason)


def _number(value: float) -> str:
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"


def _cells(row: Row) -> tuple[str, str, str, str, str, str]:
    ours = row.ours if isinstance(row.ours, str) else _number(row.ours)
    theirs = "" if row.theirs is None else _number(row.theirs)
    ratio = f"{row.ours / row.theirs:.2f}" if row.theirs and not isinstance(row.ours, str) else ""
    status = row.status or {True: "met", False: "NOT met", None: ""}[row.ok]
    return row.label, ours, theirs, ratio, row.target, status


def at_most(label: str, ours: float, theirs: float, times: float, what: str = "nginx's") -> Row:
    return Row(label, ours, theirs, f"<= {times} x {what}", ours <= times * theirs)


def at_least(label: str, ours: float, theirs: float, times: float, what: str = "nginx") -> Row:
    return Row(label, ours, theirs, f">= {times} x {what}", ours >= times * theirs)


def below(label: str, ours: float, theirs: float | None, limit: float, unit: str) -> Row:
    return Row(label, ours, theirs, f"< {limit:g} {unit}", ours < limit)


def many_rows(many: dict[str, Any]) -> list[Row]:
    """The many-at-once rows; each says why when the run was skipped (not enough disk)."""
    if "skipped" in many:
        what = f"{many['count']} x {many['size'] // MiB} MiB"
        return [
            Row(f"{what} uploads at once, total MB/s", "-", status=many["skipped"]),
            Row(f"... then {many['count']} downloads of them at once, MB/s", "-", status=many["skipped"]),
            Row("... peak RSS growth MiB/worker", "-", target="< 64 MiB", status=many["skipped"]),
            Row("... sha256 matched (answer and download)", "-", target="all", status=many["skipped"]),
        ]
    count, growth = many["count"], max(many["rss_growth_upload_mib"], many["rss_growth_download_mib"])
    return [
        Row(f"{count} x {many['size'] // MiB} MiB uploads at once, total MB/s", many["upload_mbps"]),
        Row(f"... then {count} downloads of them at once, MB/s", many["download_mbps"]),
        below("... peak RSS growth MiB/worker", growth, None, 64, "MiB"),
        Row(
            "... sha256 matched (answer and download)",
            f"{many['sha256_matched']}/{count}",
            target="all",
            ok=many["sha256_matched"] == count,
        ),
    ]


def rows(results: dict[str, Any]) -> list[Row]:
    s, n = results["storage_server"], results["nginx"]

    def both(key: str, field: str = "median", scale: float = 1.0) -> tuple[float, float]:
        return s[key][field] * scale, n[key][field] * scale

    fair, nfair = s["fairness_download"], n["fairness_download"]
    raw, nginx_put = both("upload_raw_mbps")
    tus, mem, many = s["tus_upload_mbps"], s["memory"], s["many"]
    return [
        # Issue #10's targets.
        at_least("1 GiB download MB/s", *both("download_mbps"), 0.9),
        at_most("CPU s per GiB down", *both("cpu_s_per_gib_down"), 1.2),
        at_least("1 GiB raw upload MB/s, fsync on", raw, nginx_put, 1.0, "nginx PUT"),
        at_least("4 KiB GET req/s, 32 conns", *both("get_4k", "rps"), 0.11),
        below("4 KiB GET p99 ms, 32 conns", *both("get_4k", "p99_ms"), 10, "ms"),
        at_least("4 KiB upload req/s, 32 conns, durable", *both("put_4k", "rps"), 0.2, "nginx PUT"),
        below("4 KiB upload p99 ms, 32 conns", *both("put_4k", "p99_ms"), 25, "ms"),
        at_most("server CPU us per 4 KiB upload", *both("put_4k", "cpu_ms_per_request", 1000), 6),
        at_least(
            "1 GiB download MB/s while small GETs run",
            fair["download_mbps"],
            nfair["download_mbps"],
            0.6,
            "nginx's",
        ),
        below("... small GET p99 ms meanwhile", fair["p99_ms"], nfair["p99_ms"], 5, "ms"),
        below("download TTFB p99 ms, 20 clients on 1 MiB", s["ttfb_p99_ms"], n["ttfb_p99_ms"], 10, "ms"),
        at_most("RSS at idle MiB, whole group", *both("idle", "rss_mib"), 4),
        *many_rows(many),
        # Earlier targets, kept.
        at_least(
            "1 GiB multipart upload MB/s", s["upload_multipart_mbps"]["median"], nginx_put, 0.5, "nginx PUT"
        ),
        at_least("1 GiB tus upload MB/s, 8 MiB chunks (vs our raw)", tus, raw, 0.7, "our raw upload"),
        below("RSS growth MiB/worker, upload", mem["rss_growth_upload_mib"], None, 64, "MiB"),
        below("RSS growth MiB/worker, slow download", mem["rss_growth_download_mib"], None, 64, "MiB"),
        # Reported, no target.
        Row(
            "1 GiB download MB/s, sendfile off", s["download_mbps_no_sendfile"], n["download_mbps"]["median"]
        ),
        Row(
            "CPU s per GiB down, sendfile off",
            s["cpu_s_per_gib_down_no_sendfile"],
            n["cpu_s_per_gib_down"]["median"],
        ),
        Row("raw upload MB/s, fsync off", s["upload_raw_mbps_no_fsync"], nginx_put),
        Row("4 KiB GET req/s, with X-API-Key", s["get_4k_with_key"]["rps"], n["get_4k"]["rps"]),
        Row("4 KiB GET p99 ms, with X-API-Key", s["get_4k_with_key"]["p99_ms"], n["get_4k"]["p99_ms"]),
        Row("64 KiB GET req/s", *both("get_64k", "rps")),
        Row("64 KiB upload req/s", *both("put_64k", "rps")),
        Row("small GET p99 ms during 1 GiB down+up", *both("fairness", "p99_ms")),
        Row("... the 1 GiB download itself, MB/s", *both("fairness", "download_mbps")),
        Row("download TTFB p50 ms, 20 clients on 1 MiB", s["ttfb_p50_ms"], n["ttfb_p50_ms"]),
        Row("PSS at idle MiB, whole group", *both("idle", "pss_mib")),
        Row("CPU s per GiB up", *both("cpu_s_per_gib_up")),
        Row("server CPU us per 4 KiB GET", *both("get_4k", "cpu_ms_per_request", 1000)),
    ]


def table(results: dict[str, Any]) -> str:
    """The rows as one Markdown table, columns padded."""
    cells = [("metric", "storage_server", "nginx", "ratio", "target", ""), *map(_cells, rows(results))]
    widths = [max(len(row[i]) for row in cells) for i in range(6)]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)
