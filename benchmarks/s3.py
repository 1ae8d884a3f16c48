"""The S3 endpoint next to the native API, on one service (docs/s3.md): a big PutObject and
GetObject, and 4 KiB GETs and PUTs, each side by side with the same request to the native API.

    python benchmarks/s3.py                          # 1 GiB, 3 rounds, wrk for 10 s
    python benchmarks/s3.py --smoke --json out.json  # a few MiB, one round

S3 requests are presigned URLs (SigV4 in the query, UNSIGNED-PAYLOAD) made with botocore, so
that curl and wrk can send them; each is checked like any signed request. Target: >= 0.8 x the
native API.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import (
    KiB,
    Scale,
    Server,
    Storage,
    cli,
    curl,
    ensure_tools,
    free_port,
    make_file,
    median_spread,
    request,
    wrk,
)

SECRET = "bench-secret-0123456789"
TARGET = 0.8


class S3(Server):
    """The S3 port of a Storage service; its URLs are presigned."""

    name = "s3"
    prefix = "/bench/"

    def __init__(self, storage: Storage, port: int) -> None:
        super().__init__(storage.tmp)
        self.port, self.proc, self.storage = port, storage.proc, storage

    def url(self, name: str, method: str = "GET") -> str:
        request = AWSRequest(method=method, url=f"http://127.0.0.1:{self.port}{self.prefix}{name}")
        S3SigV4QueryAuth(Credentials("bench", SECRET), "s3", "us-east-1", expires=3600).add_auth(request)
        return str(request.url)

    def stop(self) -> None:
        pass  # the Storage service stops it


def put_script(tmp: Path, server: Server, size: int) -> Path:
    """wrk's Lua: PUTs of `size` bytes to 100 keys in turn (presigned ones for S3)."""
    urls = [
        server.url(f"up-{n}.bin", "PUT") if isinstance(server, S3) else server.url(f"up-{n}.bin")
        for n in range(100)
    ]
    paths = ", ".join('"' + u.split(str(server.port), 1)[1] + '"' for u in urls)
    script = tmp / f"put-{server.name}.lua"
    script.write_text(
        f"""local body = string.rep("x", {size})
local paths = {{{paths}}}
local counter = 0
request = function()
    counter = counter % #paths + 1
    return wrk.format("PUT", paths[counter], nil, body)
end
"""
    )
    return script


def figures(server: Server, big: Path, scale: Scale, tmp: Path) -> dict[str, Any]:
    rounds: dict[str, list[float]] = {"put_mbps": [], "get_mbps": []}
    key = [arg for name, value in server.headers.items() for arg in ("-H", f"{name}: {value}")]
    for _ in range(scale.rounds):
        put = server.url("big.bin", "PUT") if isinstance(server, S3) else server.url("big.bin")
        up = curl(*key, "-T", str(big), put)
        assert up["code"] in (200, 201), up
        down = curl(*key, server.url("big.bin"))
        assert down["code"] == 200, down
        rounds["put_mbps"].append(up["up"] / 1e6)
        rounds["get_mbps"].append(down["down"] / 1e6)
    result: dict[str, Any] = {k: median_spread(v) for k, v in rounds.items()}
    result["get_4k"] = wrk(server, scale.wrk_seconds, server.url("4k.bin"))
    result["put_4k"] = wrk(server, scale.wrk_seconds, server.url("x"), put_script(tmp, server, 4 * KiB))
    return result


def run(scale: Scale, workers: int) -> dict[str, Any]:
    ensure_tools()
    results: dict[str, Any] = {"scale": scale.__dict__, "workers": workers}
    with tempfile.TemporaryDirectory(prefix="storage-bench-s3-") as tmp_name:
        tmp = Path(tmp_name)
        big = make_file(tmp / "big.bin", scale.big)
        port = free_port()
        env = {"STORAGE_S3_API_PORT": str(port)}
        storage = Storage(tmp, workers, fsync=True, env=env, api_key=SECRET)
        try:
            s3 = S3(storage, port)
            assert request(storage, "PUT", "4k.bin", os.urandom(4 * KiB)) == 201
            for server in (storage, s3):
                results[server.name] = figures(server, big, scale, tmp)
        finally:
            storage.stop()
    return results


def table(results: dict[str, Any]) -> str:
    native, s3 = results["storage_server"], results["s3"]
    rows = ["| metric | native API | S3 endpoint | ratio | target |", "|---|---|---|---|---|"]
    for label, key, field in (
        (f"{results['scale']['big'] >> 20} MiB PutObject MB/s", "put_mbps", "median"),
        (f"{results['scale']['big'] >> 20} MiB GetObject MB/s", "get_mbps", "median"),
        ("4 KiB GET req/s", "get_4k", "rps"),
        ("4 KiB PUT req/s", "put_4k", "rps"),
    ):
        ours, theirs = s3[key][field], native[key][field]
        ok = "met" if ours >= TARGET * theirs else "NOT met"
        rows.append(
            f"| {label} | {theirs:,.1f} | {ours:,.1f} | {ours / theirs:.2f} | >= {TARGET} x native: {ok} |"
        )
    for side in (native, s3):
        assert side["get_4k"]["non_2xx"] == 0, "GETs were refused"
        assert side["put_4k"]["non_2xx"] == 0, "PUTs were refused"
    return "\n".join(rows)


if __name__ == "__main__":
    cli(__doc__, run, table)
