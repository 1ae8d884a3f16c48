"""Schemathesis (its default checks, every phase) against the service's own OpenAPI document, on a
service with keys: schemathesis sends an admin key, and checks that requests without a valid one
are refused where the document says a key is needed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.seaweed import s3_env
from tests.service import ROOT, Service

SECRET = "schemathesis-secret-0123456789"


@pytest.mark.parametrize("backend", ["fs", "s3"])
def test_schemathesis_finds_no_failure(
    start: type[Service], backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    env = s3_env(request.getfixturevalue("seaweedfs").endpoints[0]) if backend == "s3" else {}
    keys = tmp_path / "keys.toml"
    keys.write_text(f'[[keys]]\nid = "schemathesis"\nsecret = "{SECRET}"\naccess = "admin"\n')
    keys.chmod(0o600)
    service = start("--workers", "2", "--access-log", "off", "--keys-file", str(keys), env=env)
    service.wait_ready(workers=2)
    result = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"http://127.0.0.1:{service.port}/openapi.json",
            "--max-examples", "40", "--request-timeout", "10", "--seed", "20261124",
            "--header", f"X-API-Key: {SECRET}",
        ],
        cwd=ROOT,  # picks up schemathesis.toml
        capture_output=True,
        text=True,
        timeout=900,
    )  # fmt: skip
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    assert "No issues found" in report or "passed" in report, report[-2000:]
    assert "Traceback" not in service.output()
