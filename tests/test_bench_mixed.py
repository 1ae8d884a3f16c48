"""benchmarks/mixed.py keeps working: its smoke (the locust mix, 5 users for 15 s, against a fresh
two-worker service with fsync on and then off) completes without a failed request and reports
every request type with its percentiles."""

from __future__ import annotations

from pathlib import Path

from tests.benchsmoke import run_benchmark


def test_mixed_load_smoke_reports_percentiles_per_request_type_with_fsync_on_and_off(tmp_path: Path) -> None:
    stdout, results = run_benchmark("mixed.py", tmp_path, "--smoke", timeout=120)
    assert "| request type " in stdout
    assert "p95 < 500 ms, 0 failures (small upload)" in stdout
    for mode, fsync in (("fsync_on", True), ("fsync_off", False)):
        run = results[mode]
        assert run["fsync"] is fsync
        rows = {f"{row['type']} {row['name']}".strip(): row for row in run["rows"]}
        total = rows["all requests"]
        assert total["count"] > 20
        assert total["failures"] == 0, run["failures"]
        assert rows["POST upload tiny"]["count"] > 0  # every BucketUser round uploads one
        assert all(row["p95_ms"] >= row["p50_ms"] for row in run["rows"])
        assert run["machine"]["service_cpu_s"] > 0
