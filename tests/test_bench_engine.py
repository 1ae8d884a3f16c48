"""The engine benchmark keeps working: its smoke run (a few MiB, one round) reports the node and
the engine each way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.service import ROOT


def test_engine_benchmark_smoke_run_compares_a_node_with_its_engine(tmp_path: Path) -> None:
    out = tmp_path / "engine.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "engine.py"), "--smoke", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "| 8 MiB upload MB/s |" in result.stdout
    assert "| 8 MiB download MB/s |" in result.stdout
    results = json.loads(out.read_text())
    for side in ("node", "engine"):
        assert results[side]["upload_mbps"]["median"] > 0
        assert results[side]["download_mbps"]["median"] > 0
    assert results["engine"]["upload_sequential_mbps"]["median"] > 0
    assert results["node"]["rss_growth_upload_mib"]["median"] < 64
