"""The engine benchmark keeps working: its smoke run (a few MiB, one round) reports the node and
the engine each way."""

from __future__ import annotations

from pathlib import Path

from tests.benchsmoke import run_benchmark


def test_engine_benchmark_smoke_run_compares_a_node_with_its_engine(tmp_path: Path) -> None:
    stdout, results = run_benchmark("engine.py", tmp_path, "--smoke")
    assert "| 8 MiB upload MB/s |" in stdout
    assert "| 8 MiB download MB/s |" in stdout
    for side in ("node", "engine"):
        assert results[side]["upload_mbps"]["median"] > 0
        assert results[side]["download_mbps"]["median"] > 0
    assert results["engine"]["upload_sequential_mbps"]["median"] > 0
    assert results["node"]["rss_growth_upload_mib"]["median"] < 64
