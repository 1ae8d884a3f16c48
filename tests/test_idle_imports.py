"""An idle worker imports only what serving the native API on its backend needs: no botocore on the
filesystem backend, no OpenAPI generator until the document is asked for, no S3 endpoint when it is
off; each comes in when it is used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.service import ROOT, free_port

# run.py's main as a worker runs it: the same settings, store checks and imports, then serve()
# in this process (fork_processes made a no-op). A thread looks at sys.modules once it serves,
# asks for /docs and /openapi.json, and stops it with SIGTERM; then the S3 paths are used.
WORKER = """
import json, os, signal, sys, threading, urllib.request

import run

LAZY = ("botocore", "boto3", "storage_server.s3", "storage_server.s3api", "storage_server.native.openapi")


def lazy_modules():
    return sorted(m for m in sys.modules if any(m == p or m.startswith(p + ".") for p in LAZY))


def get(path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
        return response.status, response.read()


def visit():
    for _ in range(300):
        try:
            get("/api/v1/health")
            break
        except OSError:
            threading.Event().wait(0.05)
    report["idle"] = lazy_modules()
    report["docs"] = get("/docs")[0]
    status, body = get("/openapi.json")
    report["openapi"] = [status, json.loads(body)["openapi"]]
    report["after_docs"] = lazy_modules()
    os.kill(os.getpid(), signal.SIGTERM)


data, port, s3_port, report = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), {}
run.fork_processes = lambda *args, **kwargs: None
threading.Thread(target=visit, daemon=True).start()
run.main(["--workers", "1", "--port", str(port), "--path", data, "--log-level", "WARNING"])

from storage_server.auth.keyring import Keyring
from storage_server.backends import open_store
from storage_server.server import make_s3_server
from storage_server.settings import Settings

config = Settings(path=data, s3_api_port=s3_port, backend="fs")
make_s3_server(config, open_store(config), Keyring([]))
report["after_s3_endpoint"] = lazy_modules()
s3 = Settings(path=data, backend="s3", s3_endpoint="http://127.0.0.1:9", s3_access_key="k", s3_secret_key="s")
open_store(s3)
report["after_s3_backend"] = lazy_modules()
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data = tmp_path_factory.mktemp("idle") / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STORAGE_")}
    result = subprocess.run(
        [sys.executable, "-c", WORKER, str(data), str(free_port()), str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return report


def test_an_idle_filesystem_worker_has_imported_no_botocore_openapi_generator_or_s3_endpoint(
    worker: dict[str, Any],
) -> None:
    assert worker["idle"] == []


def test_asking_for_the_docs_serves_them_and_imports_the_openapi_generator(worker: dict[str, Any]) -> None:
    assert worker["docs"] == 200
    assert worker["openapi"] == [200, "3.1.0"]
    assert worker["after_docs"] == ["storage_server.native.openapi"]


def test_the_s3_endpoint_and_the_s3_backend_import_their_modules_when_used(worker: dict[str, Any]) -> None:
    assert "storage_server.s3api.router" in worker["after_s3_endpoint"]
    assert not any(m.startswith("botocore") for m in worker["after_s3_endpoint"])
    assert "storage_server.s3.store" in worker["after_s3_backend"]
    assert "botocore" in worker["after_s3_backend"]
