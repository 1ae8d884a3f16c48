"""The S3 endpoint as operators run it: run.py refuses to start it without keys, every worker
listens on the S3 port beside the native one, and a SIGHUP's new keys reach it."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from tests.s3env import REGION, SECRETS, wait_until, write_keys
from tests.service import Service, free_port


def client(port: int, key: str, secret: str) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def test_the_s3_endpoint_refuses_to_start_without_keys(start: type[Service]) -> None:
    service = start("--s3-api-port", str(free_port()))
    assert service.proc.wait(20) != 0
    assert "cannot start: the S3 endpoint needs STORAGE_KEYS_FILE" in service.output()


def test_every_worker_serves_s3_and_a_sighup_reloads_its_keys(start: type[Service], tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys.toml")
    port = free_port()
    service = start("--workers", "2", "--keys-file", str(keys), "--s3-api-port", str(port))
    service.wait_ready(workers=2)
    admin = client(port, "admin", SECRETS["admin"])
    admin.create_bucket(Bucket="photos")
    for n in range(6):  # new connections: both workers answer
        admin.put_object(Bucket="photos", Key=f"f{n}", Body=b"x" * n)
    assert service.request("GET", "/api/v1/health")[0] == 200
    newcomer = "new-secret-0123456789abcdef"
    keys.write_text(
        keys.read_text() + f'\n[[keys]]\nid = "newcomer"\nsecret = "{newcomer}"\naccess = "read"\n'
    )
    os.kill(service.proc.pid, signal.SIGHUP)

    def reloaded() -> bool:
        try:
            listed = client(port, "newcomer", newcomer).list_objects_v2(Bucket="photos")
        except Exception:
            return False
        return bool(listed["KeyCount"] == 6)

    for _ in range(4):  # each worker, whichever answers
        wait_until(reloaded)
