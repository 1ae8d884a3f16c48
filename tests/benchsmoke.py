"""Running a benchmark script as its smoke test does: its printed table and its JSON results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.service import ROOT


def run_benchmark(script: str, tmp_path: Path, *args: str, timeout: float = 900) -> tuple[str, Any]:
    """Run benchmarks/<script> with `args` and --json; assert it exits 0; return what it printed
    and the results it wrote."""
    out = tmp_path / f"{Path(script).stem}.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout, json.loads(out.read_text())
