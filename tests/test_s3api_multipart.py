"""Multipart uploads through boto3, on both backends: the transfer manager with its default
checksums, every multipart call, and the refusals (order, ETags, small parts, part numbers,
malformed XML, conditions), each leaving nothing stored."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from tests.s3env import Endpoint, raw, sign

MiB = 1024 * 1024


def code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


@pytest.fixture
def client(s3: Endpoint) -> Any:
    c = s3.client()
    c.create_bucket(Bucket="photos")
    return c


def upload_parts(client: Any, key: str, sizes: list[int]) -> tuple[str, list[dict[str, Any]], bytes]:
    upload_id = client.create_multipart_upload(Bucket="photos", Key=key, ContentType="text/plain")["UploadId"]
    parts, data = [], b""
    for number, size in enumerate(sizes, start=1):
        body = os.urandom(size)
        data += body
        etag = client.upload_part(Bucket="photos", Key=key, UploadId=upload_id, PartNumber=number, Body=body)[
            "ETag"
        ]
        parts.append({"PartNumber": number, "ETag": etag})
    return upload_id, parts, data


def test_the_transfer_manager_uploads_and_downloads_a_multipart_file(client: Any, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    data = os.urandom(11 * MiB + 123)
    source.write_bytes(data)
    config = TransferConfig(multipart_threshold=6 * MiB, multipart_chunksize=5 * MiB)
    client.upload_file(str(source), "photos", "big.bin", Config=config, ExtraArgs={"Metadata": {"m": "1"}})
    head = client.head_object(Bucket="photos", Key="big.bin")
    assert head["ETag"].endswith('-3"')
    assert head["ContentLength"] == len(data)
    assert head["Metadata"] == {"m": "1"}
    target = tmp_path / "back.bin"
    client.download_file("photos", "big.bin", str(target), Config=config)
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(data).digest()
    second = client.get_object(Bucket="photos", Key="big.bin", PartNumber=2)
    assert second["Body"].read() == data[5 * MiB : 10 * MiB]
    assert second["PartsCount"] == 3
    assert client.list_multipart_uploads(Bucket="photos").get("Uploads", []) == []


def test_parts_are_listed_then_completed_with_the_s3_etag(client: Any) -> None:
    upload_id, parts, data = upload_parts(client, "k", [5 * MiB, 1000])
    listed = client.list_parts(Bucket="photos", Key="k", UploadId=upload_id)
    assert [(p["PartNumber"], p["Size"]) for p in listed["Parts"]] == [(1, 5 * MiB), (2, 1000)]
    uploads = client.list_multipart_uploads(Bucket="photos")["Uploads"]
    assert [(u["Key"], u["UploadId"]) for u in uploads] == [("k", upload_id)]
    done = client.complete_multipart_upload(
        Bucket="photos", Key="k", UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    md5s = b"".join(bytes.fromhex(p["ETag"].strip('"')) for p in parts)
    assert done["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-2"'
    got = client.get_object(Bucket="photos", Key="k")
    assert (got["Body"].read() == data, got["ContentType"], got["ETag"]) == (True, "text/plain", done["ETag"])


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda parts: parts[::-1], "InvalidPartOrder"),
        (
            lambda parts: [parts[0], {"PartNumber": 2, "ETag": '"00000000000000000000000000000000"'}],
            "InvalidPart",
        ),
        (lambda parts: [*parts, {"PartNumber": 3, "ETag": parts[0]["ETag"]}], "InvalidPart"),
    ],
)
def test_complete_checks_part_order_and_etags(client: Any, change: Any, expected: str) -> None:
    upload_id, parts, _ = upload_parts(client, "k", [5 * MiB, 10])
    with pytest.raises(ClientError) as exc:
        client.complete_multipart_upload(
            Bucket="photos", Key="k", UploadId=upload_id, MultipartUpload={"Parts": change(parts)}
        )
    assert code(exc) == expected
    assert client.list_objects_v2(Bucket="photos")["KeyCount"] == 0
    assert len(client.list_parts(Bucket="photos", Key="k", UploadId=upload_id)["Parts"]) == 2


def test_parts_under_5_mib_but_the_last_are_entity_too_small(client: Any) -> None:
    upload_id, parts, _ = upload_parts(client, "k", [1000, 1000])
    with pytest.raises(ClientError) as exc:
        client.complete_multipart_upload(
            Bucket="photos", Key="k", UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
    assert code(exc) == "EntityTooSmall"
    assert client.list_objects_v2(Bucket="photos")["KeyCount"] == 0


def test_abort_removes_the_upload(client: Any) -> None:
    upload_id, _, _ = upload_parts(client, "k", [10])
    client.abort_multipart_upload(Bucket="photos", Key="k", UploadId=upload_id)
    with pytest.raises(ClientError) as exc:
        client.list_parts(Bucket="photos", Key="k", UploadId=upload_id)
    assert code(exc) == "NoSuchUpload"
    with pytest.raises(ClientError) as exc:
        client.upload_part(Bucket="photos", Key="k", UploadId="nope", PartNumber=1, Body=b"x")
    assert code(exc) == "NoSuchUpload"


@pytest.mark.parametrize("number", [0, 10001, 2**40])
def test_part_numbers_outside_1_to_10000_are_refused(client: Any, number: int) -> None:
    upload_id = client.create_multipart_upload(Bucket="photos", Key="k")["UploadId"]
    with pytest.raises(ClientError) as exc:
        client.upload_part(Bucket="photos", Key="k", UploadId=upload_id, PartNumber=number, Body=b"x")
    assert code(exc) == "InvalidArgument"
    assert client.list_parts(Bucket="photos", Key="k", UploadId=upload_id).get("Parts", []) == []


def test_upload_part_copy_takes_a_range_of_another_object(client: Any) -> None:
    source = os.urandom(6 * MiB)
    client.put_object(Bucket="photos", Key="src", Body=source)
    upload_id = client.create_multipart_upload(Bucket="photos", Key="dst")["UploadId"]
    first = client.upload_part_copy(
        Bucket="photos", Key="dst", UploadId=upload_id, PartNumber=1, CopySource="photos/src",
        CopySourceRange=f"bytes=0-{5 * MiB - 1}",
    )["CopyPartResult"]["ETag"]  # fmt: skip
    second = client.upload_part_copy(
        Bucket="photos", Key="dst", UploadId=upload_id, PartNumber=2, CopySource="photos/src",
        CopySourceRange=f"bytes={5 * MiB}-{6 * MiB - 1}",
    )["CopyPartResult"]["ETag"]  # fmt: skip
    parts = [{"PartNumber": 1, "ETag": first}, {"PartNumber": 2, "ETag": second}]
    client.complete_multipart_upload(
        Bucket="photos", Key="dst", UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    assert client.get_object(Bucket="photos", Key="dst")["Body"].read() == source


def test_complete_with_if_none_match_does_not_replace_an_object(client: Any) -> None:
    client.put_object(Bucket="photos", Key="k", Body=b"first")
    upload_id, parts, _ = upload_parts(client, "k", [10])
    with pytest.raises(ClientError) as exc:
        client.complete_multipart_upload(
            Bucket="photos", Key="k", UploadId=upload_id, MultipartUpload={"Parts": parts}, IfNoneMatch="*"
        )
    assert code(exc) == "PreconditionFailed"
    assert client.get_object(Bucket="photos", Key="k")["Body"].read() == b"first"


@pytest.mark.parametrize(
    "body",
    [
        b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>",
        b"not xml",
        b'<!DOCTYPE x [<!ENTITY a "aaaa">]><CompleteMultipartUpload/>',
        b"<CompleteMultipartUpload>"
        + b"".join(b"<Part><PartNumber>%d</PartNumber><ETag>x</ETag></Part>" % n for n in range(1, 10002))
        + b"</CompleteMultipartUpload>",
    ],
)
def test_malformed_complete_bodies_are_malformed_xml(s3: Endpoint, client: Any, body: bytes) -> None:
    upload_id, _, _ = upload_parts(client, "k", [10])
    url = f"{s3.url}/photos/k?uploadId={upload_id}"
    status, _, answer = raw("POST", url, sign("POST", url, body=body), body)
    assert (status, b"<Code>MalformedXML</Code>" in answer) == (400, True)
    assert client.list_objects_v2(Bucket="photos")["KeyCount"] == 0
