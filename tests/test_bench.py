"""The benchmarks keep working: their smoke runs (a few MiB, one round, nginx and wrk installed from
Debian's packages when missing) complete and report every figure."""

from __future__ import annotations

from pathlib import Path

from tests.benchsmoke import run_benchmark


def test_benchmark_smoke_run_reports_every_figure(tmp_path: Path) -> None:
    stdout, results = run_benchmark("bench.py", tmp_path, "--smoke")
    for row in (  # issue #10's rows, each with its target
        "| 1 GiB download MB/s ",
        "| CPU s per GiB down ",
        "| 1 GiB raw upload MB/s, fsync on ",
        "| 4 KiB GET req/s, 32 conns ",
        "| 4 KiB upload p99 ms, 32 conns ",
        "| server CPU us per 4 KiB upload ",
        "| 1 GiB download MB/s while small GETs run ",
        "| download TTFB p99 ms, 20 clients on 1 MiB ",
        "| RSS at idle MiB, whole group ",
        "| 8 x 1 MiB uploads at once, total MB/s ",
    ):
        assert row in stdout, row
    assert "| >= 0.11 x nginx " in stdout
    assert "| <= 4 x nginx's " in stdout
    ours, nginx = results["storage_server"], results["nginx"]
    for figures in (ours, nginx):
        assert figures["download_mbps"]["median"] > 0
        assert figures["upload_raw_mbps"]["median"] > 0
        assert figures["get_4k"]["rps"] > 0
        assert figures["put_4k"]["rps"] > 0
        assert figures["get_4k"]["non_2xx"] == 0
        assert figures["put_4k"]["non_2xx"] == 0
        assert figures["fairness_download"]["download_mbps"] > 0
        assert figures["idle"]["processes"] >= 3  # the supervisor (or master) and 2 workers
        assert 0 < figures["idle"]["pss_mib"] <= figures["idle"]["rss_mib"]
    assert ours["upload_multipart_mbps"]["median"] > 0
    assert ours["memory"]["rss_growth_upload_mib"] < 64
    assert ours["upload_raw_mbps_no_fsync"] > 0
    many = ours["many"]
    assert many["errors"] == []
    assert many["sha256_matched"] == many["count"] == 8
    assert many["upload_mbps"] > 0
    assert many["download_mbps"] > 0


def test_backends_benchmark_smoke_run_reports_both_backends(tmp_path: Path) -> None:
    stdout, results = run_benchmark("backends.py", tmp_path, "--smoke")
    assert "| 1 GiB download MB/s |" in stdout
    for backend in ("fs", "s3"):
        figures = results[backend]
        assert figures["upload_raw_mbps"]["median"] > 0
        assert figures["download_mbps"]["median"] > 0
        assert figures["get_4k"]["non_2xx"] == 0
        assert figures["put_4k"]["non_2xx"] == 0
        assert figures["memory"]["rss_growth_upload_mib"] < 64
    assert results["engine"]["upload_mbps"] > 0


def test_s3_benchmark_smoke_run_compares_the_s3_endpoint_with_the_native_api(tmp_path: Path) -> None:
    stdout, results = run_benchmark("s3.py", tmp_path, "--smoke")
    assert "| 4 KiB GET req/s |" in stdout
    for side in ("storage_server", "s3"):
        assert results[side]["put_mbps"]["median"] > 0
        assert results[side]["get_mbps"]["median"] > 0
        assert results[side]["get_4k"]["non_2xx"] == 0
        assert results[side]["put_4k"]["non_2xx"] == 0
