"""Settings: one class feeds env vars, run.py flags and the README's configuration table."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import CliApp

from storage_server.settings import Settings, markdown_table
from tests.service import ROOT


def test_readme_configuration_table_is_generated_from_the_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    assert markdown_table() in readme, "regenerate it: python -m storage_server.settings"
    for name in Settings.model_fields:
        assert f"STORAGE_{name.upper()}" in readme


def test_defaults_are_safe_for_an_internal_service() -> None:
    config = Settings()
    assert config.host == "127.0.0.1"
    assert config.path == Path("data")
    assert config.max_upload_size is None
    assert config.fsync is True


def test_env_vars_use_the_storage_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_PATH", "/srv/blobs")
    monkeypatch.setenv("STORAGE_WORKERS", "4")
    monkeypatch.setenv("STORAGE_FSYNC", "false")
    config = Settings()
    assert (config.path, config.workers, config.fsync) == (Path("/srv/blobs"), 4, False)


def test_run_py_flags_come_from_the_same_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_PORT", "9000")
    config = CliApp.run(
        Settings,
        cli_args=["--port", "9001", "--max-upload-size", "1024", "--no-fsync", "--stall-timeout", "5"],
    )
    assert (config.port, config.max_upload_size, config.fsync, config.stall_timeout) == (
        9001,
        1024,
        False,
        5.0,
    )


@pytest.mark.parametrize(
    ("field", "value"), [("port", 0), ("port", 70000), ("workers", -1), ("chunk_size", 10)]
)
def test_out_of_range_values_are_refused(field: str, value: int) -> None:
    with pytest.raises(ValidationError):
        Settings(**{field: value})
