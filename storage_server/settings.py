"""Every setting of the service: read from `STORAGE_*` environment variables and `run.py` flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

KiB = 1024
MiB = 1024 * KiB


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
    backend: Literal["fs", "s3"] = Field(
        "fs",
        description="Where files live: `fs` in the storage path, `s3` in an S3-compatible object store "
        "(the `s3_*` settings; then the storage path holds only upload spool files).",
    )
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
    sendfile: bool = Field(
        True,
        description="Send file bodies from disk with sendfile(2), in the kernel (filesystem backend).",
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
    staged_expiry: float = Field(
        24 * 3600.0,
        gt=0,
        description="Seconds an unfinished multipart or resumable upload is kept untouched before the "
        "sweep removes it.",
    )
    keys_file: Path | None = Field(
        None,
        description="TOML file of API keys (`[[keys]]` with id, secret, access, buckets; mode 0600). "
        "Unset: no authentication, as an internal service on a trusted network.",
    )
    cors_origins: list[str] = Field(
        [],
        description="Origins allowed to call the API from a browser, a JSON list such as "
        '`["https://app.example.com"]` (`"*"`: any); empty sends no CORS headers.',
    )
    s3_endpoint: str | None = Field(
        None, description="S3 endpoint URL, e.g. `http://127.0.0.1:8333`; unset means AWS for the region."
    )
    s3_region: str = Field("us-east-1", description="S3 region used for signing.")
    s3_access_key: str | None = Field(
        None,
        description="S3 access key; unset means botocore's usual sources (AWS_* variables, profiles, roles).",
    )
    s3_secret_key: SecretStr | None = Field(None, description="S3 secret key (never logged).")
    s3_bucket: str = Field(
        "storage-server", description="The S3 bucket that holds every bucket of the service."
    )
    s3_prefix: str = Field(
        "",
        pattern=r"^(?:[A-Za-z0-9._-]+/)*$",
        description="Key prefix (ending in '/') inside the S3 bucket, to share it with other data.",
    )
    s3_path_style: bool = Field(
        True, description="Path-style addressing (`endpoint/bucket/key`), as most self-hosted engines need."
    )
    s3_part_size: int = Field(
        16 * MiB,
        ge=8 * MiB,
        le=64 * MiB,
        description="Bytes per S3 multipart part; smaller uploads go out as one PUT.",
    )
    s3_api_port: int = Field(
        0,
        ge=0,
        le=65535,
        description="Port of the S3 endpoint ([docs/s3.md](docs/s3.md)); 0: off. Needs `STORAGE_KEYS_FILE`.",
    )
    s3_api_domain: str | None = Field(
        None,
        description="Domain of virtual-hosted S3 requests (`bucket.DOMAIN`); unset: path style only.",
    )
    s3_api_region: str = Field("us-east-1", min_length=1, description="The region the S3 endpoint signs for.")
    scrub_rate: float = Field(
        50.0,
        gt=0,
        description="Most MB/s (10^6 bytes) a scrub reads (`run.py scrub` and background passes), so it "
        "can run beside live traffic.",
    )
    scrub_period: float = Field(
        0.0,
        ge=0,
        description="Seconds between the starts of two background scrub passes; 0 turns them off.",
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
        default = "unset" if default is None else f"`{default!r}`" if default == "" else f"`{default}`"
        rows.append(f"| `STORAGE_{name.upper()}` | `{flag}` | {default} | {field.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
