"""The idle-memory benchmark keeps working: it starts both servers (nginx from Debian's packages when
missing), measures each whole group and writes the figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.service import ROOT


def test_idle_memory_benchmark_measures_both_groups(tmp_path: Path) -> None:
    out = tmp_path / "idle.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "idle.py"), "--settle", "0.5", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| RSS MiB |" in result.stdout
    figures = json.loads(out.read_text())
    for side in ("storage_server", "nginx"):
        assert figures[side]["processes"] == 3  # a supervisor or master, and 2 workers
        assert 0 < figures[side]["pss_mib"] <= figures[side]["rss_mib"]
    assert figures["rss_ratio"] > 0
