"""Every setting of the service: read from `STORAGE_*` environment variables and `run.py` flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

KiB = 1024


class Settings(BaseSettings):
    """The service's configuration; each field is an env var `STORAGE_<NAME>` and a flag `--<name>`."""

    model_config = SettingsConfigDict(
        env_prefix="STORAGE_",
        frozen=True,
        extra="ignore",
        cli_prog_name="run.py",
        cli_kebab_case=True,
        cli_implicit_flags=True,
    )

    host: str = Field(
        "127.0.0.1",
        description="Address to listen on. The service is internal: use 0.0.0.0 only behind a firewall.",
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port to listen on.")
    workers: int = Field(0, ge=0, description="Worker processes to fork; 0 starts one per CPU.")
    path: Path = Field(Path("./data"), description="Directory that holds the buckets (created when missing).")
    chunk_size: int = Field(
        64 * KiB,
        ge=4 * KiB,
        le=16 * 1024 * KiB,
        description="Bytes read from disk and flushed to the client per download step.",
    )
    max_upload_size: int | None = Field(
        None,
        ge=0,
        description="Largest accepted request body in bytes (413 above it); unset means no limit.",
    )
    min_free_bytes: int = Field(
        64 * 1024 * KiB,
        ge=0,
        description="Free space kept in reserve: uploads that would eat into it get 507.",
    )
    fsync: bool = Field(
        True,
        description="fsync each upload and its directory before answering 201. Turn off only for benchmarks.",
    )
    idle_timeout: float = Field(
        75.0, gt=0, description="Seconds a keep-alive connection may sit idle before it is closed."
    )
    stall_timeout: float = Field(
        60.0,
        gt=0,
        description="Seconds an upload may go without receiving a byte before it is aborted.",
    )
    shutdown_timeout: float = Field(
        30.0,
        ge=0,
        description="Seconds a worker waits for in-flight requests after SIGTERM before it exits.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Logging threshold.")
    access_log: Literal["text", "json", "off"] = Field(
        "text", description="One line per request (method, route, status, bytes, duration, worker), or none."
    )


def markdown_table() -> str:
    """The README's configuration table, generated from the fields above."""
    rows = ["| env var | `run.py` flag | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            flag += f"` / `--no-{flag[2:]}"
        default = field.default
        if isinstance(default, Path) and not default.is_absolute():
            default = f"./{default}"
        default = "unset" if default is None else f"`{default}`"
        rows.append(f"| `STORAGE_{name.upper()}` | `{flag}` | {default} | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
