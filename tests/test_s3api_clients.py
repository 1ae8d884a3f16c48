"""Real S3 clients against the S3 endpoint, on both backends: the aws cli, rclone, minio-py and
boto3's transfer manager each create a bucket, upload a tree of mixed sizes (one file above their
multipart threshold), list it, download it and compare the bytes, hand out a presigned GET that
curl follows, then delete everything."""

from __future__ import annotations

import hashlib
from pathlib import Path

from boto3.s3.transfer import TransferConfig
from minio import Minio
from minio.deleteobjects import DeleteObject

from tests.clients import (
    PART,
    SIZES,
    MiB,
    aws,
    aws_env,
    curl,
    make_tree,
    rclone,
    rclone_config,
    read_tree,
    restic,
)
from tests.s3env import REGION, SECRETS, Endpoint


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_aws_cli_round_trips_a_tree(s3: Endpoint, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    env = aws_env(tmp_path)
    aws(s3.url, env, "s3", "mb", "s3://cli")
    aws(s3.url, env, "s3", "cp", "--recursive", str(tmp_path / "tree"), "s3://cli/up")
    listed = aws(s3.url, env, "s3", "ls", "--recursive", "s3://cli")
    assert sorted(line.split()[-1] for line in listed.splitlines()) == sorted(f"up/{n}" for n in SIZES)
    head = s3.client().head_object(Bucket="cli", Key="up/big.bin")
    assert head["ETag"].endswith('-2"')  # uploaded in parts
    aws(s3.url, env, "s3", "cp", "--recursive", "s3://cli/up", str(tmp_path / "down"))
    assert read_tree(tmp_path / "down") == tree
    url = aws(s3.url, env, "s3", "presign", "s3://cli/up/dir/mid.bin", "--expires-in", "300").strip()
    assert curl(url, tmp_path / "presigned") == 200
    assert (tmp_path / "presigned").read_bytes() == tree["dir/mid.bin"]
    aws(s3.url, env, "s3", "rm", "--recursive", "s3://cli/up")
    aws(s3.url, env, "s3", "rb", "s3://cli")
    assert [b["Name"] for b in s3.client().list_buckets()["Buckets"]] == []


def test_rclone_round_trips_a_tree(s3: Endpoint, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    config = rclone_config(tmp_path, s3.url)
    rclone(config, "mkdir", "store:rcl")
    rclone(config, "copy", str(tmp_path / "tree"), "store:rcl/up")
    listed = rclone(config, "lsf", "-R", "--files-only", "store:rcl")
    assert sorted(listed.split()) == sorted(f"up/{n}" for n in SIZES)
    rclone(config, "copy", "store:rcl/up", str(tmp_path / "down"))
    assert read_tree(tmp_path / "down") == tree
    rclone(config, "check", str(tmp_path / "tree"), "store:rcl/up")
    rclone(config, "mkdir", "store:rcl/folder")  # a folder marker, or nothing: both work
    url = rclone(config, "link", "--expire", "1h", "store:rcl/up/small.txt").strip()
    assert curl(url, tmp_path / "presigned") == 200
    assert (tmp_path / "presigned").read_bytes() == tree["small.txt"]
    rclone(config, "purge", "store:rcl")
    assert [b["Name"] for b in s3.client().list_buckets()["Buckets"]] == []


def test_minio_py_round_trips_a_tree(s3: Endpoint, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    client = Minio(
        f"127.0.0.1:{s3.port}", access_key="admin", secret_key=SECRETS["admin"], secure=False, region=REGION
    )
    client.make_bucket("mio")
    for name in SIZES:
        client.fput_object("mio", f"up/{name}", str(tmp_path / "tree" / name), part_size=PART)
    listed = sorted(o.object_name for o in client.list_objects("mio", recursive=True))
    assert listed == sorted(f"up/{n}" for n in SIZES)
    for name in SIZES:
        client.fget_object("mio", f"up/{name}", str(tmp_path / "down" / name))
    assert read_tree(tmp_path / "down") == tree
    url = client.presigned_get_object("mio", "up/one")
    assert curl(url, tmp_path / "presigned") == 200
    assert (tmp_path / "presigned").read_bytes() == tree["one"]
    errors = list(client.remove_objects("mio", [DeleteObject(f"up/{n}") for n in SIZES]))
    assert errors == []
    client.remove_bucket("mio")
    assert not client.bucket_exists("mio")


def test_boto3_transfer_manager_round_trips_a_tree(s3: Endpoint, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    client = s3.client()
    config = TransferConfig(multipart_threshold=6 * MiB, multipart_chunksize=PART)
    client.create_bucket(Bucket="bt3")
    for name in SIZES:
        client.upload_file(str(tmp_path / "tree" / name), "bt3", name, Config=config)
    pages = client.get_paginator("list_objects_v2").paginate(Bucket="bt3", PaginationConfig={"PageSize": 2})
    objects = {o["Key"]: o for page in pages for o in page.get("Contents", [])}
    assert sorted(objects) == sorted(SIZES)
    assert objects["small.txt"]["ETag"] == f'"{md5(tree["small.txt"])}"'
    for name in SIZES:
        (tmp_path / "down" / name).parent.mkdir(parents=True, exist_ok=True)
        client.download_file("bt3", name, str(tmp_path / "down" / name), Config=config)
    assert read_tree(tmp_path / "down") == tree
    url = client.generate_presigned_url("get_object", Params={"Bucket": "bt3", "Key": "dir/sub/leaf"})
    assert curl(url, tmp_path / "presigned") == 200
    assert (tmp_path / "presigned").read_bytes() == tree["dir/sub/leaf"]
    client.delete_objects(Bucket="bt3", Delete={"Objects": [{"Key": n} for n in SIZES]})
    client.delete_bucket(Bucket="bt3")


def test_restic_backs_up_and_restores_a_tree(s3: Endpoint, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree")
    restic(s3.url, tmp_path, "init")
    restic(s3.url, tmp_path, "backup", "--quiet", str(tmp_path / "tree"))
    restic(s3.url, tmp_path, "check")
    restic(s3.url, tmp_path, "restore", "latest", "--target", str(tmp_path / "restored"))
    assert read_tree(tmp_path / "restored" / (tmp_path / "tree").relative_to("/")) == tree
