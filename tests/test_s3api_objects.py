"""The S3 endpoint through boto3, on both backends: buckets, objects (conditions, ranges,
metadata, overrides), copies, listings, batch deletes, the answers that keep clients working,
folder markers, and one set of files shared with the native API."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from storage_server.settings import Settings
from storage_server.store import Store
from tests.s3env import Endpoint, raw, sign, write_keys


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@pytest.fixture
def client(s3: Endpoint) -> Any:
    c = s3.client()
    c.create_bucket(Bucket="photos")
    return c


def test_buckets_are_created_listed_headed_located_and_deleted(s3: Endpoint) -> None:
    c = s3.client()
    c.create_bucket(Bucket="alpha")
    c.create_bucket(Bucket="beta")
    assert [b["Name"] for b in c.list_buckets()["Buckets"]] == ["alpha", "beta"]
    c.head_bucket(Bucket="alpha")
    assert c.get_bucket_location(Bucket="alpha").get("LocationConstraint") is None
    with pytest.raises(ClientError) as exc:
        c.create_bucket(Bucket="alpha")
    assert code(exc) == "BucketAlreadyOwnedByYou"
    c.delete_bucket(Bucket="alpha")
    with pytest.raises(ClientError) as exc:
        c.head_bucket(Bucket="alpha")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_bad_bucket_names_and_missing_buckets_get_s3_codes(s3: Endpoint) -> None:
    c = s3.client()
    with pytest.raises(ClientError) as exc:
        c.create_bucket(Bucket="Bad_Name")
    assert code(exc) == "InvalidBucketName"
    with pytest.raises(ClientError) as exc:
        c.list_objects_v2(Bucket="missing")
    assert code(exc) == "NoSuchBucket"


def test_a_bucket_with_objects_is_not_deleted(client: Any) -> None:
    client.put_object(Bucket="photos", Key="a.txt", Body=b"a")
    with pytest.raises(ClientError) as exc:
        client.delete_bucket(Bucket="photos")
    assert code(exc) == "BucketNotEmpty"
    assert client.get_object(Bucket="photos", Key="a.txt")["Body"].read() == b"a"


def test_put_then_get_returns_the_bytes_with_an_md5_etag_and_metadata(client: Any) -> None:
    data = b"hello world" * 1000
    put = client.put_object(
        Bucket="photos",
        Key="dir/hello.txt",
        Body=data,
        ContentType="text/plain",
        Metadata={"colour": "blue"},
        ContentDisposition='attachment; filename="h.txt"',
        CacheControl="max-age=60",
        ContentEncoding="identity",
    )
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = client.get_object(Bucket="photos", Key="dir/hello.txt")
    assert got["Body"].read() == data
    assert got["ETag"] == put["ETag"]
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"colour": "blue"}
    assert got["ContentDisposition"] == 'attachment; filename="h.txt"'
    assert got["CacheControl"] == "max-age=60"
    assert got["ContentEncoding"] == "identity"
    head = client.head_object(Bucket="photos", Key="dir/hello.txt")
    assert head["ContentLength"] == len(data)


def test_get_honours_range_conditions_and_response_overrides(client: Any) -> None:
    etag = client.put_object(Bucket="photos", Key="r.bin", Body=bytes(range(256)))["ETag"]
    part = client.get_object(Bucket="photos", Key="r.bin", Range="bytes=10-19")
    assert part["Body"].read() == bytes(range(10, 20))
    assert part["ContentRange"] == "bytes 10-19/256"
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket="photos", Key="r.bin", Range="bytes=999-")
    assert code(exc) == "InvalidRange"
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket="photos", Key="r.bin", IfMatch='"nope"')
    assert code(exc) == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket="photos", Key="r.bin", IfNoneMatch=etag)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    got = client.get_object(Bucket="photos", Key="r.bin", ResponseContentType="image/png", PartNumber=1)
    assert got["ContentType"] == "image/png"
    assert got["Body"].read() == bytes(range(256))


def test_missing_objects_are_no_such_key(client: Any) -> None:
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket="photos", Key="nope")
    assert code(exc) == "NoSuchKey"
    client.delete_object(Bucket="photos", Key="nope")  # deleting nothing succeeds, as in S3


def test_conditional_puts_create_only_or_replace_only_a_version(client: Any) -> None:
    first = client.put_object(Bucket="photos", Key="c.txt", Body=b"one", IfNoneMatch="*")
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket="photos", Key="c.txt", Body=b"two", IfNoneMatch="*")
    assert code(exc) == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket="photos", Key="c.txt", Body=b"two", IfMatch='"0000"')
    assert code(exc) == "PreconditionFailed"
    client.put_object(Bucket="photos", Key="c.txt", Body=b"three", IfMatch=first["ETag"])
    assert client.get_object(Bucket="photos", Key="c.txt")["Body"].read() == b"three"


def test_copy_keeps_or_replaces_metadata_and_onto_itself_changes_it(client: Any) -> None:
    client.put_object(
        Bucket="photos", Key="src", Body=b"bytes", ContentType="text/plain", Metadata={"a": "1"}
    )
    client.create_bucket(Bucket="other")
    client.copy_object(Bucket="other", Key="dst", CopySource={"Bucket": "photos", "Key": "src"})
    got = client.get_object(Bucket="other", Key="dst")
    assert (got["Body"].read(), got["ContentType"], got["Metadata"]) == (b"bytes", "text/plain", {"a": "1"})
    with pytest.raises(ClientError) as exc:
        client.copy_object(Bucket="photos", Key="src", CopySource="photos/src")
    assert code(exc) == "InvalidRequest"
    client.copy_object(
        Bucket="photos",
        Key="src",
        CopySource="photos/src",
        MetadataDirective="REPLACE",
        Metadata={"b": "2"},
        ContentType="text/csv",
    )
    head = client.head_object(Bucket="photos", Key="src")
    assert (head["Metadata"], head["ContentType"]) == ({"b": "2"}, "text/csv")
    with pytest.raises(ClientError) as exc:
        client.copy_object(Bucket="other", Key="x", CopySource="photos/src", CopySourceIfMatch='"nope"')
    assert code(exc) == "PreconditionFailed"


def test_listings_page_by_prefix_delimiter_and_tokens(client: Any) -> None:
    keys = ["a/1", "a/2", "a/b/3", "b", "c d", "é"]
    for key in keys:
        client.put_object(Bucket="photos", Key=key, Body=b"x")
    seen, token = [], None
    while True:
        kwargs = {"ContinuationToken": token} if token else {}
        page = client.list_objects_v2(Bucket="photos", MaxKeys=2, **kwargs)
        seen += [o["Key"] for o in page.get("Contents", [])]
        if not page["IsTruncated"]:
            break
        token = page["NextContinuationToken"]
    assert seen == keys
    page = client.list_objects_v2(Bucket="photos", Delimiter="/", Prefix="a/")
    assert [o["Key"] for o in page["Contents"]] == ["a/1", "a/2"]
    assert [p["Prefix"] for p in page["CommonPrefixes"]] == ["a/b/"]
    after = client.list_objects_v2(Bucket="photos", StartAfter="b")
    assert [o["Key"] for o in after["Contents"]] == ["c d", "é"]
    v1 = client.list_objects(Bucket="photos", Marker="a/b/3", MaxKeys=1)
    assert [o["Key"] for o in v1["Contents"]] == ["b"]
    assert v1["IsTruncated"]
    versions = client.list_object_versions(Bucket="photos", Prefix="b")
    assert [(v["Key"], v["VersionId"]) for v in versions["Versions"]] == [("b", "null")]


def test_delete_objects_reports_each_key_and_quiet_mode_only_errors(client: Any) -> None:
    for key in ("x", "y"):
        client.put_object(Bucket="photos", Key=key, Body=b"1")
    result = client.delete_objects(Bucket="photos", Delete={"Objects": [{"Key": "x"}, {"Key": "../bad"}]})
    assert [d["Key"] for d in result["Deleted"]] == ["x"]
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("../bad", "InvalidArgument")]
    quiet = client.delete_objects(
        Bucket="photos", Delete={"Objects": [{"Key": "y"}], "Quiet": True}, BypassGovernanceRetention=True
    )
    assert "Deleted" not in quiet
    assert client.list_objects_v2(Bucket="photos")["KeyCount"] == 0


def test_versioning_and_acls_answer_what_keeps_clients_working(client: Any) -> None:
    client.put_object(Bucket="photos", Key="k", Body=b"1")
    assert "Status" not in client.get_bucket_versioning(Bucket="photos")
    acl = client.get_bucket_acl(Bucket="photos")
    assert acl["Grants"][0]["Permission"] == "FULL_CONTROL"
    assert client.get_object_acl(Bucket="photos", Key="k")["Grants"][0]["Permission"] == "FULL_CONTROL"


def test_unserved_subresources_are_not_implemented(client: Any) -> None:
    with pytest.raises(ClientError) as exc:
        client.get_bucket_policy(Bucket="photos")
    assert code(exc) == "NotImplemented"
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]


@pytest.mark.parametrize(
    ("first", "second"),
    [("a", "a/b"), ("a/b", "a")],
)
def test_keys_the_layout_cannot_hold_get_a_clear_error_and_nothing_partial(
    client: Any, first: str, second: str
) -> None:
    client.put_object(Bucket="photos", Key=first, Body=b"1")
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket="photos", Key=second, Body=b"2")
    assert code(exc) == "KeyConflict"
    assert [o["Key"] for o in client.list_objects_v2(Bucket="photos")["Contents"]] == [first]


@pytest.mark.parametrize("key", ["a/../b", "./x", "a//b", "x" * 256])
def test_keys_with_dot_segments_or_overlong_segments_are_invalid_arguments(client: Any, key: str) -> None:
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket="photos", Key=key, Body=b"1")
    assert code(exc) == "InvalidArgument"


def test_folder_markers_store_nothing_and_exist_while_files_are_under_them(client: Any) -> None:
    client.put_object(Bucket="photos", Key="folder/", Body=b"")
    assert client.list_objects_v2(Bucket="photos")["KeyCount"] == 0
    client.put_object(Bucket="photos", Key="folder/f", Body=b"1")
    assert client.head_object(Bucket="photos", Key="folder/")["ContentLength"] == 0
    client.delete_object(Bucket="photos", Key="folder/")


def test_files_are_shared_with_the_native_api_both_ways(s3: Endpoint, client: Any) -> None:
    status, _ = s3.native("POST", "/api/v1/files/photos/native.txt", b"from native")
    assert status == 201
    got = client.get_object(Bucket="photos", Key="native.txt")
    assert got["Body"].read() == b"from native"
    assert got["ETag"].endswith('-1"')
    client.put_object(Bucket="photos", Key="s3.txt", Body=b"from s3", ContentType="text/plain")
    status, body = s3.native("GET", "/api/v1/files/photos/s3.txt")
    assert (status, body) == (200, b"from s3")
    listing = json.loads(s3.native("GET", "/api/v1/buckets/photos/files")[1])
    assert sorted(f["path"] for f in listing["files"]) == ["native.txt", "s3.txt"]
    client.delete_object(Bucket="photos", Key="native.txt")
    assert s3.native("GET", "/api/v1/files/photos/native.txt")[0] == 404


def test_virtual_hosted_style_names_the_bucket_in_the_host(
    config: Settings, store: Store, tmp_path: Path
) -> None:
    keyed = config.model_copy(
        update={"keys_file": write_keys(tmp_path / "k.toml"), "s3_api_domain": "s3.test"}
    )
    endpoint = Endpoint(keyed, store)
    try:
        endpoint.client().create_bucket(Bucket="photos")
        host = f"photos.s3.test:{endpoint.port}"
        signed = sign("PUT", f"http://{host}/v/key.txt", body=b"virtual")
        status, _, _ = raw("PUT", f"{endpoint.url}/v/key.txt", {**signed, "host": host}, b"virtual")
        assert status == 200
        got = endpoint.client().get_object(Bucket="photos", Key="v/key.txt")
        assert got["Body"].read() == b"virtual"
    finally:
        endpoint.stop()
