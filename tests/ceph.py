"""Ceph RGW on 127.0.0.1, the stricter second engine (`make test-ceph`): one monitor, one OSD
on memstore and one radosgw, from Debian's packages (installed when missing). RGW checks what
SeaweedFS ignores, such as x-amz-content-sha256 and Content-MD5 on DeleteObjects."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path

from tests.seaweed import ACCESS_KEY, SECRET_KEY, free_port_pair

PACKAGES = ("ceph-mon", "ceph-osd", "radosgw")
# Without authentication (a throwaway cluster on loopback) the messenger must not insist on
# encrypted sessions, which need cephx.
CRC = ("--ms_mon_client_mode=crc", "--ms_client_mode=crc")


def install() -> None:
    if all(shutil.which(tool) for tool in ("ceph-mon", "ceph-osd", "radosgw", "monmaptool")):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], check=True, env=env)


class Ceph:
    """A running single-node Ceph with RGW; `endpoint` is its S3 URL."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.conf = folder / "ceph.conf"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.endpoint = ""

    @classmethod
    def start(cls, folder: Path) -> Ceph:
        install()
        ceph = cls(folder)
        try:
            ceph._start()
        except BaseException:
            ceph.stop()
            raise
        return ceph

    def _start(self) -> None:
        folder, fsid = self.folder, uuid.uuid4()
        for sub in ("run", "log", "mon", "osd/osd.0", "spool"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        mon, rgw = free_port_pair(), free_port_pair()
        self.conf.write_text(
            "\n".join(
                [
                    "[global]",
                    f"fsid = {fsid}",
                    f"mon host = 127.0.0.1:{mon}",
                    "public addr = 127.0.0.1",
                    "cluster addr = 127.0.0.1",
                    "ms bind ipv6 = false",
                    "auth cluster required = none",
                    "auth service required = none",
                    "auth client required = none",
                    "osd pool default size = 1",
                    "osd pool default min size = 1",
                    "osd pool default pg num = 8",
                    "osd pool default pgp num = 8",
                    "osd crush chooseleaf type = 0",
                    "osd objectstore = memstore",
                    "memstore device bytes = 4294967296",
                    "mon warn on pool no redundancy = false",
                    f"run dir = {folder}/run",
                    f"admin socket = {folder}/run/$name.asok",
                    f"log file = {folder}/log/$name.log",
                    f"pid file = {folder}/run/$name.pid",
                    f"mon data = {folder}/mon/$name",
                    f"osd data = {folder}/osd/$name",
                    f"keyring = {folder}/keyring",
                    "[client.rgw]",
                    f"rgw frontends = beast endpoint=127.0.0.1:{rgw}",
                    "",
                ]
            )
        )
        self._run("ceph-authtool", "--create-keyring", str(folder / "keyring"), "--gen-key", "-n", "mon.")
        self._run(
            "monmaptool",
            "--create",
            "--add",
            "a",
            f"127.0.0.1:{mon}",
            "--fsid",
            str(fsid),
            str(folder / "monmap"),
        )
        self._run("ceph-mon", "-c", str(self.conf), "--mkfs", "-i", "a", "--monmap", str(folder / "monmap"))
        self._daemon("ceph-mon", "-i", "a")
        self._run("ceph", "-c", str(self.conf), "osd", "create")
        self._run("ceph-osd", "-c", str(self.conf), "-i", "0", "--mkfs")
        self._daemon("ceph-osd", "-i", "0")
        self._daemon("radosgw", "-n", "client.rgw", *CRC)
        self.endpoint = f"http://127.0.0.1:{rgw}"
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(self.endpoint, timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("radosgw did not start") from None
                time.sleep(0.5)
        self._run(
            "radosgw-admin", "-c", str(self.conf), *CRC, "user", "create", "--uid=storage",
            "--display-name=storage", f"--access-key={ACCESS_KEY}", f"--secret-key={SECRET_KEY}",
        )  # fmt: skip

    def _run(self, *command: str) -> None:
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def _daemon(self, *command: str) -> None:
        log = (self.folder / "log" / f"{command[0]}.out").open("ab")
        self.processes.append(
            subprocess.Popen(
                [command[0], "-c", str(self.conf), "-f", *command[1:]],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        log.close()

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
