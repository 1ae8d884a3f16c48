"""The S3 clients the S3 endpoint is tested with, each its own implementation of the protocol:
the aws cli (PyPI), rclone (Debian: installed with apt-get when missing) and minio-py, each
configured in a temp dir (never ~/.aws or ~/.config/rclone); and a tree of files to send."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.s3env import REGION, SECRETS

MiB = 1024 * 1024
BIN = Path(sys.executable).parent
PART = 5 * MiB  # the part size every client is set to; its threshold is 6 MiB
SIZES = {
    "empty": 0,
    "one": 1,
    "small.txt": 1000,
    "dir/mid.bin": 300_000,
    "dir/sub/leaf": 5000,
    "big.bin": 9 * MiB,
}


def make_tree(root: Path) -> dict[str, bytes]:
    """Files of mixed sizes, one above the clients' multipart threshold; their bytes by path."""
    tree = {}
    for name, size in SIZES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(size)
        path.write_bytes(data)
        tree[name] = data
    return tree


def read_tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=180, check=False)
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


def aws_env(home: Path, key: str = "admin") -> dict[str, str]:
    """The environment of an aws cli whose config and credentials live under `home`."""
    (home / "config").write_text(
        f"[default]\nregion = {REGION}\ns3 =\n  addressing_style = path\n  signature_version = s3v4\n"
        f"  multipart_threshold = 6MB\n  multipart_chunksize = 5MB\n"
    )
    (home / "credentials").write_text(
        f"[default]\naws_access_key_id = {key}\naws_secret_access_key = {SECRETS[key]}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return env


def aws(endpoint: str, env: dict[str, str], *args: str) -> str:
    return run(str(BIN / "aws"), "--endpoint-url", endpoint, *args, env=env)


def debian_binary(name: str) -> str:
    """A client from Debian's packages, installed when missing (CI is root on Debian)."""
    found = shutil.which(name)
    if found is None:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run("apt-get", "update", "-qq", env=env)
        run("apt-get", "install", "-y", "-qq", name, env=env)
        found = shutil.which(name)
    assert found is not None
    return found


def restic(endpoint: str, home: Path, *args: str) -> str:
    """restic against a repository in the bucket `backups` of the endpoint."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env |= {
        "AWS_ACCESS_KEY_ID": "admin",
        "AWS_SECRET_ACCESS_KEY": SECRETS["admin"],
        "RESTIC_PASSWORD": "correct horse battery staple",
        "RESTIC_CACHE_DIR": str(home / "restic-cache"),
        "HOME": str(home),
    }
    return run(debian_binary("restic"), "-r", f"s3:{endpoint}/backups", *args, env=env)


def rclone_config(home: Path, endpoint: str, key: str = "admin") -> Path:
    path = home / "rclone.conf"
    path.write_text(
        "[store]\ntype = s3\nprovider = Other\n"
        f"access_key_id = {key}\nsecret_access_key = {SECRETS[key]}\n"
        f"endpoint = {endpoint}\nregion = {REGION}\nforce_path_style = true\n"
    )
    return path


def rclone(config: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}  # AWS_CA_BUNDLE and the like
    flags = ("--config", str(config), "--s3-upload-cutoff", "6M", "--s3-chunk-size", "5M")
    return run(debian_binary("rclone"), *flags, *args, env=env)


def curl(url: str, target: Path) -> int:
    """Fetch `url` with curl (Debian's) into `target`; the HTTP status."""
    out = run("curl", "-sS", "-o", str(target), "-w", "%{http_code}", url)
    return int(out)
