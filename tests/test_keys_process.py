"""The keys file as operators use it with run.py: refused at start when unusable, secrets kept out
of logs, metrics and command lines, reloaded on SIGHUP without dropping connections."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.service import Service, children

SECRET_A = "a-secret-7f3c9e1d5b2a4680"
SECRET_B = "b-secret-0e8d6c4a2f1b3957"
WRONG = "w-secret-5d1e9a7c3b8f2046"  # a wrong guess is a secret too (a typo of a real one)
GOOD_KEYS = f'[[keys]]\nid = "ops-backend"\nsecret = "{SECRET_A}"\naccess = "admin"\n'


def write_keys(path: Path, text: str, mode: int = 0o600) -> Path:
    """Write a keys file as an operator would replace one: whole, then renamed into place."""
    temp = path.with_name(path.name + ".new")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    os.chmod(temp, mode)
    os.replace(temp, path)
    return path


def call(
    service: Service, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request on a fresh connection: status, headers (any case), body."""
    conn = service.connection()
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def workers_listening(service: Service, count: int) -> None:
    """Wait until `count` workers have logged that they listen (their SIGHUP handler is set by then)."""
    assert wait_for(lambda: service.output().count("worker listening on") >= count), service.output()


BAD_KEYS = {
    "malformed TOML": (
        f'[[keys]]\nid = "ops"\nsecret = "{SECRET_A}\naccess = "admin"\n',
        0o600,
        "not valid TOML",
    ),
    "a duplicate id": (
        f'{GOOD_KEYS}\n[[keys]]\nid = "ops-backend"\nsecret = "{SECRET_B}"\naccess = "read"\n',
        0o600,
        "'ops-backend' is listed twice",
    ),
    "a secret of 15 characters": (
        '[[keys]]\nid = "ops"\nsecret = "fifteen-chars-x"\naccess = "read"\n',
        0o600,
        "at least 16 characters",
    ),
    "mode 0644": (GOOD_KEYS, 0o644, "open to other users (mode 644)"),
    "an unknown access level": (
        f'[[keys]]\nid = "ops"\nsecret = "{SECRET_A}"\naccess = "superuser"\n',
        0o600,
        "`access` must be read, write or admin",
    ),
}


@pytest.mark.parametrize(("text", "mode", "problem"), list(BAD_KEYS.values()), ids=list(BAD_KEYS))
def test_run_refuses_an_unusable_keys_file_naming_the_problem_never_the_secret(
    start: type[Service], tmp_path: Path, text: str, mode: int, problem: str
) -> None:
    keys = write_keys(tmp_path / "keys.toml", text, mode)
    service = start("--workers", "1", "--keys-file", str(keys))
    assert service.proc.wait(10) != 0  # TimeoutExpired if it serves instead
    output = service.output()
    assert "storage_server: cannot start:" in output
    assert problem in output
    assert str(keys) in output
    for secret in (SECRET_A, SECRET_B, "fifteen-chars-x"):
        assert secret not in output


def test_the_same_keys_file_at_mode_0600_starts(start: type[Service], tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys.toml", GOOD_KEYS, 0o644)
    refused = start("--workers", "1", "--keys-file", str(keys))
    assert refused.proc.wait(20) != 0
    os.chmod(keys, 0o600)
    service = start("--workers", "1", "--keys-file", str(keys))
    service.wait_ready(workers=1)
    assert service.request("GET", "/health")[0] == 200
    assert call(service, "GET", "/api/v1/buckets", {"X-API-Key": SECRET_A})[0] == 200


def test_a_key_is_needed_and_its_id_is_logged_never_its_secret(start: type[Service], tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys.toml", GOOD_KEYS)
    service = start("--workers", "2", "--keys-file", str(keys))
    service.wait_ready(workers=2)

    status, headers, body = call(service, "GET", "/api/v1/buckets")
    assert status == 401
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(body)["code"] == "unauthorized"
    status, headers, body = call(service, "GET", "/api/v1/buckets", {"X-API-Key": WRONG})
    assert status == 401
    assert "WWW-Authenticate" in headers
    assert call(service, "GET", "/api/v1/buckets", {"Authorization": f"Bearer {WRONG}"})[0] == 401
    assert call(service, "GET", "/api/v1/buckets", {"X-API-Key": SECRET_A})[0] == 200
    assert call(service, "GET", "/api/v1/buckets", {"Authorization": f"Bearer {SECRET_A}"})[0] == 200
    assert call(service, "GET", "/api/v1/buckets", {"Authorization": f"Basic {SECRET_A}"})[0] == 401

    status, _, metrics = call(service, "GET", "/metrics", {"X-API-Key": SECRET_A})
    assert status == 200
    assert b"storage_requests_total" in metrics
    assert SECRET_A.encode() not in metrics
    assert WRONG.encode() not in metrics

    # The access lines are written after the answer: wait for the last one.
    assert wait_for(lambda: "GET /metrics 200" in service.output())
    output = service.output()
    assert re.search(r"GET /api/v1/buckets 200 .* key=ops-backend$", output, re.MULTILINE), output
    assert re.search(r"GET /api/v1/buckets 401 .* key=-$", output, re.MULTILINE), output
    assert SECRET_A not in output
    assert WRONG not in output

    workers = children(service.proc.pid)
    assert len(workers) == 2
    for pid in [service.proc.pid, *workers]:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert str(keys).encode() in cmdline  # the file is named, its secrets are not
        assert SECRET_A.encode() not in cmdline


def test_sighup_swaps_the_keys_without_dropping_connections(start: type[Service], tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys.toml", GOOD_KEYS)
    service = start("--workers", "2", "--keys-file", str(keys))
    service.wait_ready(workers=2)
    workers_listening(service, 2)
    workers = sorted(children(service.proc.pid))

    kept = service.connection()
    kept.request("GET", "/api/v1/buckets", headers={"X-API-Key": SECRET_A})
    first = kept.getresponse()
    assert first.status == 200
    first.read()
    sock = kept.sock
    assert sock is not None

    write_keys(keys, GOOD_KEYS.replace(SECRET_A, SECRET_B).replace("ops-backend", "ops-backend-2"))
    os.kill(service.proc.pid, signal.SIGHUP)
    # Each worker says it reloaded; then B opens fresh connections, whichever worker takes them.
    assert wait_for(lambda: service.output().count("keys reloaded: 1") == 2), service.output()
    for _ in range(20):
        assert call(service, "GET", "/api/v1/buckets", {"X-API-Key": SECRET_B})[0] == 200
        assert call(service, "GET", "/api/v1/buckets", {"X-API-Key": SECRET_A})[0] == 401
    served_b = re.findall(
        r"GET /api/v1/buckets 200 .* worker=(\d+) .* key=ops-backend-2$", service.output(), re.M
    )
    assert sorted({int(pid) for pid in served_b}) == workers  # the kernel spread them over both

    # The connection opened before the reload is the same socket, and answers with the new keys.
    kept.request("GET", "/api/v1/buckets", headers={"X-API-Key": SECRET_B})
    again = kept.getresponse()
    assert again.status == 200
    again.read()
    kept.request("GET", "/api/v1/buckets", headers={"X-API-Key": SECRET_A})
    refused = kept.getresponse()
    assert refused.status == 401
    refused.read()
    assert kept.sock is sock
    kept.close()

    write_keys(keys, '[[keys]]\nid = "broken"\nsecret = "too-short"\naccess = "admin"\n')
    os.kill(service.proc.pid, signal.SIGHUP)
    # The supervisor (for the workers it will fork) and both workers keep the keys they had.
    assert wait_for(lambda: service.output().count("keys not reloaded") == 3), service.output()
    for _ in range(10):
        assert call(service, "GET", "/api/v1/buckets", {"X-API-Key": SECRET_B})[0] == 200
        assert call(service, "GET", "/api/v1/buckets", {"X-API-Key": "too-short"})[0] == 401
    assert service.proc.poll() is None
    assert sorted(children(service.proc.pid)) == workers  # reloads, not restarts
    output = service.output()
    assert "at least 16 characters" in output
    for secret in (SECRET_A, SECRET_B):
        assert secret not in output


@pytest.mark.parametrize(
    ("host", "warned"), [(["--host", "0.0.0.0"], True), ([], False)], ids=["all interfaces", "loopback"]
)
def test_no_keys_on_a_public_host_is_warned_about_at_start(
    start: type[Service], host: list[str], warned: bool
) -> None:
    service = start("--workers", "1", *host)
    service.wait_ready(workers=1)
    assert service.request("GET", "/api/v1/buckets")[0] == 200  # open: no keys
    assert ("no STORAGE_KEYS_FILE" in service.output()) is warned
