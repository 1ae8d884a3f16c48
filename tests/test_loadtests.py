"""The locust mix runs against a real two-worker service with zero failed requests."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from tests.service import ROOT, Service


def run_locust(
    service: Service, tmp_path: Path, *classes: str, env: dict[str, str] | None = None
) -> dict[str, str]:
    prefix = tmp_path / "locust"
    result = subprocess.run(
        [
            sys.executable, "-m", "locust", "-f", str(ROOT / "loadtests" / "locustfile.py"),
            "--headless", "--users", "6", "--spawn-rate", "6", "--run-time", "6s", "--only-summary",
            "--host", f"http://127.0.0.1:{service.port}", "--csv", str(prefix), *classes,
        ],
        env={**os.environ, "LOADTEST_DIR": str(tmp_path / "files"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    with open(f"{prefix}_stats.csv", newline="") as stats:
        return next(row for row in csv.DictReader(stats) if row["Name"] == "Aggregated")


def test_locust_mix_smoke_with_keys_has_no_failures(start: type[Service], tmp_path: Path) -> None:
    keys = tmp_path / "keys.toml"
    keys.write_text('[[keys]]\nid = "locust"\nsecret = "locust-secret-0123456789"\naccess = "admin"\n')
    keys.chmod(0o600)
    service = start("--workers", "2", "--keys-file", str(keys))
    service.wait_ready(workers=2)
    totals = run_locust(
        service,
        tmp_path,
        "StorageUser",
        "BucketUser",
        "ResumableUser",
        env={"LOADTEST_API_KEY": "locust-secret-0123456789"},
    )
    assert int(totals["Request Count"]) > 20
    assert int(totals["Failure Count"]) == 0
    assert "Traceback" not in service.output()


def test_large_file_user_round_trips_with_checked_hashes(start: type[Service], tmp_path: Path) -> None:
    service = start("--workers", "2")
    service.wait_ready(workers=2)
    totals = run_locust(service, tmp_path, "LargeFileUser", env={"LOADTEST_LARGE_MIB": "16"})
    assert int(totals["Request Count"]) >= 3
    assert int(totals["Failure Count"]) == 0
