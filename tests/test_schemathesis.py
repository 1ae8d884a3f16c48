"""Schemathesis (its default checks, every phase) against the service's own OpenAPI document."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.seaweed import s3_env
from tests.service import ROOT, Service


@pytest.mark.parametrize("backend", ["fs", "s3"])
def test_schemathesis_finds_no_failure(
    start: type[Service], backend: str, request: pytest.FixtureRequest
) -> None:
    env = s3_env(request.getfixturevalue("seaweedfs").endpoints[0]) if backend == "s3" else {}
    service = start("--workers", "2", "--access-log", "off", env=env)
    service.wait_ready(workers=2)
    result = subprocess.run(
        [
            sys.executable, "-m", "schemathesis.cli", "run", f"http://127.0.0.1:{service.port}/openapi.json",
            "--max-examples", "40", "--request-timeout", "10", "--seed", "20261124",
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
