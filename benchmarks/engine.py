"""One storage_server node on the S3 backend next to its engine (SeaweedFS, `SeaweedFS.single` on
127.0.0.1) reached through botocore directly, in one run (docs/scaling-out.md).

    make bench-engine                                     # 1 GiB, 3 rounds
    python benchmarks/engine.py --smoke --json out.json   # a few MiB, one round (what CI runs)

The engine's own figures: the big file up with boto3's transfer manager (16 MiB parts, as the
node's STORAGE_S3_PART_SIZE, its default 10 threads) and down as one streamed GetObject read
1 MiB at a time (as a node reads it). The node: a raw PUT and a GET with curl. Rounds alternate
engine, node, engine, node; medians. Target: the node >= 0.8 x the engine, each way.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import boto3
from bench import Scale, cli
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from benchmarks.rows import curl, fresh_upload, median_spread
from benchmarks.servers import MiB, Storage, make_file, peak_rss_growth
from storage_server.s3 import staging
from tests.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedFS, s3_env

PART = 16 * MiB  # the node's default STORAGE_S3_PART_SIZE
BUCKET = "storage-tests"
TARGET = 0.8


def engine_client(endpoint: str) -> Any:
    """A boto3 client as a careful application would make one (no CRCs, like the node's)."""
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=16,
        ),
    )


def engine_round(client: Any, big: Path) -> dict[str, float]:
    """MB/s of the engine itself: the big file up (transfer manager, and one part at a time for
    reference), the seconds of a copy inside the engine (what a node's commit adds), and down."""
    size, figures = big.stat().st_size, {}
    os.sync()
    began = time.perf_counter()
    client.upload_file(
        str(big),
        BUCKET,
        "engine.bin",
        Config=TransferConfig(multipart_threshold=PART, multipart_chunksize=PART),
    )
    figures["upload_mbps"] = size / (time.perf_counter() - began) / 1e6
    os.sync()
    began = time.perf_counter()
    sequential(client, big)
    figures["upload_sequential_mbps"] = size / (time.perf_counter() - began) / 1e6
    began = time.perf_counter()
    client.copy_object(
        Bucket=BUCKET, Key="engine-copy.bin", CopySource={"Bucket": BUCKET, "Key": "engine.bin"}
    )
    figures["copy_s"] = time.perf_counter() - began
    began = time.perf_counter()
    body = client.get_object(Bucket=BUCKET, Key="engine.bin")["Body"]
    got = 0
    while chunk := body.read(MiB):
        got += len(chunk)
    assert got == size, (got, size)
    figures["download_mbps"] = size / (time.perf_counter() - began) / 1e6
    return figures


def sequential(client: Any, big: Path) -> None:
    """The big file up in PART-sized parts, one at a time (what a node did before parallel parts)."""
    started = client.create_multipart_upload(Bucket=BUCKET, Key="engine-seq.bin")
    parts = []
    with big.open("rb") as source:
        number = 1
        while body := source.read(PART):
            sent = client.upload_part(
                Bucket=BUCKET,
                Key="engine-seq.bin",
                UploadId=started["UploadId"],
                PartNumber=number,
                Body=body,
            )
            parts.append({"ETag": sent["ETag"], "PartNumber": number})
            number += 1
    client.complete_multipart_upload(
        Bucket=BUCKET, Key="engine-seq.bin", UploadId=started["UploadId"], MultipartUpload={"Parts": parts}
    )


def node_round(node: Storage, big: Path) -> dict[str, float]:
    figures: dict[str, float] = {}
    fresh_upload(node, "big.bin")

    def upload() -> None:
        up = curl("-T", str(big), node.url("big.bin"))
        assert up["code"] == 201, up
        figures["upload_mbps"] = up["up"] / 1e6

    figures["rss_growth_upload_mib"] = peak_rss_growth(node, upload)
    down = curl(node.url("big.bin"))
    assert down["code"] == 200, down
    figures["download_mbps"] = down["down"] / 1e6
    return figures


def run(scale: Scale, workers: int) -> dict[str, Any]:
    if shutil.which("curl") is None:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "curl"], check=True)
    results: dict[str, Any] = {
        "scale": scale.__dict__,
        "workers": workers,
        "cpus": os.cpu_count(),
        "part_size": PART,
        "parts_in_flight": getattr(staging, "PARTS_IN_FLIGHT", 1),
        "load_before": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="storage-bench-engine-") as tmp_name:
        tmp = Path(tmp_name)
        big = make_file(tmp / "big.bin", scale.big)
        weed = SeaweedFS.single(tmp / "seaweedfs")
        node: Storage | None = None
        try:
            weed.make_bucket(BUCKET)
            client = engine_client(weed.endpoints[0])
            (tmp / "node").mkdir()
            node = Storage(tmp / "node", workers, fsync=True, env=s3_env(weed.endpoints[0]))
            rounds: dict[str, list[dict[str, float]]] = {"engine": [], "node": []}
            for _ in range(scale.rounds):
                rounds["engine"].append(engine_round(client, big))
                rounds["node"].append(node_round(node, big))
            for side, figures in rounds.items():
                results[side] = {k: median_spread([r[k] for r in figures]) for k in figures[0]}
        finally:
            if node is not None:
                node.stop()
            weed.stop()
    results["load_after"] = os.getloadavg()
    return results


def table(results: dict[str, Any]) -> str:
    engine, node = results["engine"], results["node"]
    size = f"{results['scale']['big'] >> 20} MiB"
    rows = [
        "| metric | storage_server node (s3) | SeaweedFS via botocore | ratio | target |  |",
        "|---|---|---|---|---|---|",
    ]
    for label, key in ((f"{size} upload MB/s", "upload_mbps"), (f"{size} download MB/s", "download_mbps")):
        ours, theirs = node[key]["median"], engine[key]["median"]
        ok = "met" if ours >= TARGET * theirs else "NOT met"
        rows.append(f"| {label} | {ours:,.1f} | {theirs:,.1f} | {ours / theirs:.2f} | >= {TARGET} x | {ok} |")
    seq = engine["upload_sequential_mbps"]["median"]
    rows.append(f"| ... engine upload, one part at a time | | {seq:,.1f} | | (report) |  |")
    rows.append(f"| ... engine copy of the file, s | | {engine['copy_s']['median']:.2f} | | (report) |  |")
    rss = node["rss_growth_upload_mib"]["median"]
    rows.append(f"| node RSS growth MiB/worker, upload | {rss:.1f} | | | (report) |  |")
    spread = ", ".join(
        f"{side} {key.split('_')[0]} {f[key]['min']:,.1f}-{f[key]['max']:,.1f}"
        for side, f in (("node", node), ("engine", engine))
        for key in ("upload_mbps", "download_mbps")
    )
    load = ", ".join(f"{x:.2f}" for x in results["load_before"])
    rows.append(
        f"\nSpread, MB/s: {spread}. Parts of {results['part_size'] >> 20} MiB, "
        f"{results['parts_in_flight']} in flight per upload; load average before: {load}."
    )
    return "\n".join(rows)


if __name__ == "__main__":
    cli(__doc__, run, table)
