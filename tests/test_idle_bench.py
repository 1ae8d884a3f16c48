"""The idle-memory benchmark keeps working: it starts both servers (nginx from Debian's packages when
missing), measures each whole group and writes the figures."""

from __future__ import annotations

from pathlib import Path

from tests.benchsmoke import run_benchmark


def test_idle_memory_benchmark_measures_both_groups(tmp_path: Path) -> None:
    stdout, results = run_benchmark("idle.py", tmp_path, "--settle", "0.5", timeout=300)
    assert "| RSS MiB |" in stdout
    for side in ("storage_server", "nginx"):
        assert results[side]["processes"] == 3  # a supervisor or master, and 2 workers
        assert 0 < results[side]["pss_mib"] <= results[side]["rss_mib"]
    assert results["rss_ratio"] > 0
