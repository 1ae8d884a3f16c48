"""One storage_server node on each backend, side by side: the filesystem store and the S3 store on
a SeaweedFS started on 127.0.0.1 (README "Scaling out").

    make bench-backends                                     # 1 GiB files, 3 rounds, 5 GiB memory runs
    python benchmarks/backends.py --smoke --json out.json   # a few MiB, one round (what CI runs)

Both nodes run with the same workers and fsync on; rounds alternate fs, s3, fs, s3.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import bench
from bench import KiB, MiB, Scale, Storage

from tests.seaweed import SeaweedFS, s3_env

PART = 16 * MiB


def run(scale: Scale, workers: int) -> dict[str, Any]:
    bench.ensure_tools()
    results: dict[str, Any] = {"scale": scale.__dict__, "workers": workers, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="storage-backends-") as tmp_name:
        tmp = Path(tmp_name)
        big = bench.make_file(tmp / "big.bin", scale.big)
        weed = SeaweedFS.single(tmp / "seaweedfs")
        nodes: dict[str, Storage] = {}
        try:
            weed.make_bucket("storage-tests")
            for name, env in (("fs", {}), ("s3", s3_env(weed.endpoints[0]))):
                (tmp / name).mkdir()
                nodes[name] = Storage(tmp / name, workers, fsync=True, env=env)
            for node in nodes.values():
                for name, size in (("4k.bin", 4 * KiB), ("1m.bin", MiB)):
                    assert bench.request(node, "PUT", name, os.urandom(size)) == 201
            rounds: dict[str, list[dict[str, float]]] = {name: [] for name in nodes}
            for _ in range(scale.rounds):
                for name, node in nodes.items():
                    figures: dict[str, float] = {}
                    bench.transfers(node, big, figures)
                    rounds[name].append(figures)
            for name, node in nodes.items():
                summary: dict[str, Any] = {
                    k: bench.median_spread([r[k] for r in rounds[name]]) for k in rounds[name][0]
                }
                summary.update(bench.ttfb(node, "1m.bin", 20, scale.ttfb_requests))
                summary["get_4k"] = bench.wrk(node, scale.wrk_seconds, node.url("4k.bin"))
                script = bench.put_script(tmp, node, 4 * KiB)
                summary["put_4k"] = bench.wrk(node, scale.wrk_seconds, node.url("x"), script)
                summary["memory"] = bench.memory(node, scale.memory)
                results[name] = summary
            results["engine"] = engine(weed, big)
        finally:
            for node in nodes.values():
                node.stop()
            weed.stop()
    return results


def engine(weed: SeaweedFS, big: Path) -> dict[str, float]:
    """SeaweedFS itself through botocore, for scale: the big file up in 16 MiB parts one at a time
    (as a node sends them), copied inside the engine (as a node's commit does), and down."""
    client, size = weed.client(), big.stat().st_size
    began = time.perf_counter()
    started = client.create_multipart_upload(Bucket="storage-tests", Key="engine.bin")
    parts = []
    with big.open("rb") as source:
        for number in range(1, -(-size // PART) + 1):
            body = source.read(PART)
            sent = client.upload_part(
                Bucket="storage-tests",
                Key="engine.bin",
                UploadId=started["UploadId"],
                PartNumber=number,
                Body=body,
            )
            parts.append({"ETag": sent["ETag"], "PartNumber": number})
    client.complete_multipart_upload(
        Bucket="storage-tests",
        Key="engine.bin",
        UploadId=started["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    upload = size / (time.perf_counter() - began) / 1e6
    began = time.perf_counter()
    client.copy_object(
        Bucket="storage-tests",
        Key="engine-copy.bin",
        CopySource={"Bucket": "storage-tests", "Key": "engine.bin"},
    )
    copy = time.perf_counter() - began
    began = time.perf_counter()
    body = client.get_object(Bucket="storage-tests", Key="engine.bin")["Body"]
    while body.read(MiB):
        pass
    return {
        "upload_mbps": upload,
        "copy_s": copy,
        "download_mbps": size / (time.perf_counter() - began) / 1e6,
    }


ROWS = [
    ("1 GiB raw upload MB/s", "upload_raw_mbps", "median"),
    ("1 GiB multipart upload MB/s", "upload_multipart_mbps", "median"),
    ("1 GiB download MB/s", "download_mbps", "median"),
    ("download TTFB p50 ms, 20 clients", "ttfb_p50_ms", None),
    ("download TTFB p99 ms, 20 clients", "ttfb_p99_ms", None),
    ("4 KiB GET req/s", "get_4k", "rps"),
    ("4 KiB GET p99 ms", "get_4k", "p99_ms"),
    ("4 KiB upload req/s", "put_4k", "rps"),
    ("4 KiB upload p99 ms", "put_4k", "p99_ms"),
    ("CPU s per GiB up (node)", "cpu_s_per_gib_up", "median"),
    ("CPU s per GiB down (node)", "cpu_s_per_gib_down", "median"),
    ("RSS growth MiB/worker, upload", "memory", "rss_growth_upload_mib"),
    ("RSS growth MiB/worker, slow download", "memory", "rss_growth_download_mib"),
]


def table(results: dict[str, Any]) -> str:
    def value(backend: str, key: str, field: str | None) -> float:
        figure = results[backend][key]
        return float(figure if field is None else figure[field])

    lines = ["| metric | fs | s3 (SeaweedFS) | s3 / fs |", "|---|---|---|---|"]
    for label, key, field in ROWS:
        fs, s3 = value("fs", key, field), value("s3", key, field)
        ratio = f"{s3 / fs:.2f}" if fs else ""
        lines.append(f"| {label} | {fs:,.1f} | {s3:,.1f} | {ratio} |")
    direct = results["engine"]
    lines.append(
        f"\nSeaweedFS itself through botocore on the same machine: {direct['upload_mbps']:,.1f} MB/s up "
        f"(16 MiB parts, one at a time), {direct['download_mbps']:,.1f} MB/s down, and "
        f"{direct['copy_s']:.2f} s to copy the big file inside the engine."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    bench.cli(__doc__, run, table)
