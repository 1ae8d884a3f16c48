"""The servers the benchmarks drive (storage_server's run.py, nginx) on free 127.0.0.1 ports, and
what is read from /proc about their processes: CPU time, peak RSS, idle memory of the group."""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from run import children  # noqa: E402
from tests.service import free_port  # noqa: E402

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
TICK = os.sysconf("SC_CLK_TCK")


def ensure_tools() -> None:
    """Install nginx, wrk and curl from Debian's packages when one is missing (wants root)."""
    missing = [tool for tool in ("nginx", "wrk", "curl") if shutil.which(tool) is None]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)


def make_file(path: Path, size: int) -> Path:
    """Write `size` random bytes (one random MiB repeated) to `path`, a block at a time."""
    block = os.urandom(MiB)
    with path.open("wb") as out:
        left = size
        while left > 0:
            left -= out.write(block[: min(left, MiB)])
    return path


class Server:
    name = ""
    prefix = ""  # URL path of the files

    def __init__(self, tmp: Path, workers: int = 0) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.worker_count = workers  # wait() waits for this many
        self.proc: subprocess.Popen[bytes]
        self.headers: dict[str, str] = {}  # sent with every request (a key, when the server has keys)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}{self.prefix}{name}"

    def workers(self) -> list[int]:
        return children(self.proc.pid)

    def wait(self) -> None:
        """Return once the server answers and all its workers are forked."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/")
                conn.getresponse().read()
                if len(self.workers()) >= self.worker_count:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Storage(Server):
    name = "storage_server"
    prefix = "/api/v1/files/bench/"

    def __init__(
        self,
        tmp: Path,
        workers: int,
        fsync: bool,
        env: dict[str, str] | None = None,
        api_key: str | None = None,
        extra: tuple[str, ...] = (),
    ) -> None:
        super().__init__(tmp, workers)
        data = tmp / "storage"
        args = ["--workers", str(workers), "--port", str(self.port), "--path", str(data)]
        args += ["--access-log", "off", "--log-level", "WARNING"]
        args += ["--fsync" if fsync else "--no-fsync", *extra]
        if api_key is not None:  # a service with keys: every request carries one
            keys = tmp / "keys.toml"
            keys.parent.mkdir(parents=True, exist_ok=True)
            keys.write_text(f'[[keys]]\nid = "bench"\nsecret = "{api_key}"\naccess = "admin"\n')
            keys.chmod(0o600)
            args += ["--keys-file", str(keys)]
            self.headers = {"X-API-Key": api_key}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run.py"), *args],
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.wait()
        conn = http.client.HTTPConnection("127.0.0.1", self.port)
        conn.request("POST", "/api/v1/buckets", body=b'{"name": "bench"}', headers=self.headers)
        conn.getresponse().read()


class Nginx(Server):
    name = "nginx"
    prefix = "/"

    def __init__(self, tmp: Path, workers: int) -> None:
        super().__init__(tmp, workers)
        prefix = tmp / "nginx"
        for sub in ("www", "body", "logs"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(
            f"""user root;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_max_body_size 0;
    client_body_temp_path {prefix}/body;
    server {{
        listen 127.0.0.1:{self.port};
        root {prefix}/www;
        location / {{
            dav_methods PUT DELETE;
            create_full_put_path on;
        }}
    }}
}}
"""
        )
        (prefix / "www" / "index.html").write_text("ok")
        self.proc = subprocess.Popen(
            ["nginx", "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"], start_new_session=True
        )
        self.wait()


def request(server: Server, method: str, name: str, body: bytes | None = None) -> int:
    """Status of one request to the server's file `name`."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    conn.request(method, f"{server.prefix}{name}", body=body, headers=server.headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response.status


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / TICK


@contextlib.contextmanager
def cpu(server: Server, into: dict[str, float], key: str) -> Iterator[None]:
    """Put in into[key] the CPU seconds the server's workers spent in the block."""
    before = cpu_seconds(server.workers())
    yield
    into[key] = cpu_seconds(server.workers()) - before


def status_kib(pid: int, field: str, name: str = "status") -> int:
    """A kB field of /proc/<pid>/status (or of another /proc/<pid> file of the same form)."""
    for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_rss_growth(server: Server, action: Callable[[], None]) -> float:
    """MiB the busiest worker's peak RSS grew during `action` (its peak is reset first)."""
    base = {}
    for pid in server.workers():
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset VmHWM
        base[pid] = status_kib(pid, "VmRSS")
    action()
    return max(status_kib(pid, "VmHWM") - rss for pid, rss in base.items()) / 1024


def process_group(pid: int) -> list[int]:
    """`pid` and all its descendants (a supervisor or nginx's master, and its workers)."""
    found, todo = [pid], [pid]
    while todo:
        kids = children(todo.pop())
        found += kids
        todo += kids
    return found


def idle_group_memory(server: Server, settle: float = 10.0) -> dict[str, float]:
    """RSS (VmRSS) and PSS (smaps_rollup) summed over the server's whole group, in MiB, once it is
    idle: all workers up and the sum steady over half a second (at most `settle` seconds).

    Measured as benchmarks/idle.py measures it (its measure_group)."""

    def measure() -> dict[str, float]:
        from benchmarks.idle import measure_group  # idle.py imports this module

        return measure_group(process_group(server.proc.pid))

    deadline = time.monotonic() + settle
    last = measure()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = measure()
        if now["processes"] == last["processes"] and abs(now["rss_mib"] - last["rss_mib"]) < 0.25:
            return now
        last = now
    return last
