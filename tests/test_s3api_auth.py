"""Who gets in through the S3 endpoint, on both backends: the access table walked with every kind
of key, anonymous reads of public buckets, presigned URLs (and tampered ones), and hostile input
(bad, missing and skewed signatures, wrong regions, bodies that do not match what was signed,
aws-chunked bodies with bad chunk signatures or trailer checksums): each the right S3 error,
nothing stored, never a 5xx."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import zlib
from typing import Any

import crc32c
import pytest

from storage_server.s3api.base import ACCESS
from storage_server.s3api.checksums import crc64nvme
from tests.s3env import REGION, SECRETS, Endpoint, presign, raw, sign

LEVEL = {"reader": 1, "writer": 2, "admin": 3, "elsewhere": 3}
DELETE_BODY = b"<Delete><Object><Key>gone</Key></Object></Delete>"
PART = b"<Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>"
COMPLETE_BODY = b"<CompleteMultipartUpload>" + PART + b"</CompleteMultipartUpload>"
# One request per operation of the access table: (method, path, query, body, extra headers).
REQUESTS: dict[str, tuple[str, str, str, bytes, dict[str, str]]] = {
    "ListBuckets": ("GET", "/", "", b"", {}),
    "CreateBucket": ("PUT", "/{b}", "", b"", {}),
    "DeleteBucket": ("DELETE", "/{b}", "", b"", {}),
    "HeadBucket": ("HEAD", "/{b}", "", b"", {}),
    "GetBucketLocation": ("GET", "/{b}", "location=", b"", {}),
    "GetBucketVersioning": ("GET", "/{b}", "versioning=", b"", {}),
    "GetBucketAcl": ("GET", "/{b}", "acl=", b"", {}),
    "ListObjects": ("GET", "/{b}", "", b"", {}),
    "ListObjectsV2": ("GET", "/{b}", "list-type=2", b"", {}),
    "ListObjectVersions": ("GET", "/{b}", "versions=", b"", {}),
    "ListMultipartUploads": ("GET", "/{b}", "uploads=", b"", {}),
    "GetObject": ("GET", "/{b}/file", "", b"", {}),
    "HeadObject": ("HEAD", "/{b}/file", "", b"", {}),
    "GetObjectAcl": ("GET", "/{b}/file", "acl=", b"", {}),
    "ListParts": ("GET", "/{b}/file", "uploadId=nope", b"", {}),
    "PutObject": ("PUT", "/{b}/new", "", b"data", {}),
    "CopyObject": ("PUT", "/{b}/copy", "", b"", {"x-amz-copy-source": "/{b}/file"}),
    "DeleteObject": ("DELETE", "/{b}/gone", "", b"", {}),
    "DeleteObjects": ("POST", "/{b}", "delete=", DELETE_BODY, {}),
    "CreateMultipartUpload": ("POST", "/{b}/mp", "uploads=", b"", {}),
    "UploadPart": ("PUT", "/{b}/mp", "partNumber=1&uploadId=nope", b"x", {}),
    "UploadPartCopy": (
        "PUT",
        "/{b}/mp",
        "partNumber=1&uploadId=nope",
        b"",
        {"x-amz-copy-source": "/{b}/file"},
    ),
    "CompleteMultipartUpload": ("POST", "/{b}/mp", "uploadId=nope", COMPLETE_BODY, {}),
    "AbortMultipartUpload": ("DELETE", "/{b}/mp", "uploadId=nope", b"", {}),
}


def error_code(body: bytes) -> str:
    return body.split(b"<Code>", 1)[1].split(b"</Code>", 1)[0].decode() if b"<Code>" in body else ""


@pytest.fixture
def bucket(s3: Endpoint) -> str:
    client = s3.client()
    for name in ("photos", "other"):
        client.create_bucket(Bucket=name)
        client.put_object(Bucket=name, Key="file", Body=b"stored")
    return "photos"


def send(s3: Endpoint, op: str, key: str, bucket: str) -> tuple[int, bytes]:
    method, path, query, body, extra = REQUESTS[op]
    url = s3.url + path.format(b=bucket) + (f"?{query}" if query else "")
    headers = {k: v.format(b=bucket) for k, v in extra.items()}
    status, _, answer = raw(method, url, sign(method, url, body=body, headers=headers, key=key), body)
    return status, answer


def test_every_operation_of_the_access_table_has_a_request() -> None:
    assert set(REQUESTS) == set(ACCESS)


@pytest.mark.parametrize("key", sorted(LEVEL))
def test_the_access_table_holds_for_every_kind_of_key(s3: Endpoint, bucket: str, key: str) -> None:
    wrong = []
    for op in sorted(ACCESS):
        target = "newbucket" if op == "CreateBucket" else bucket
        status, body = send(s3, op, key, target)
        allowed = LEVEL[key] >= ACCESS[op] and (key != "elsewhere" or op == "ListBuckets")
        denied = status == 403 and error_code(body) in ("AccessDenied", "")  # HEAD answers carry no body
        if status >= 500 or denied == allowed:
            wrong.append((op, status, body[:200]))
    assert wrong == []
    written = s3.client().list_objects_v2(Bucket=bucket, Prefix="new")["KeyCount"]
    assert written == (1 if LEVEL[key] >= 2 and key != "elsewhere" else 0)


def test_anonymous_requests_only_read_objects_of_public_buckets(s3: Endpoint, bucket: str) -> None:
    assert raw("GET", f"{s3.url}/photos/file")[0] == 403
    s3.native("PATCH", "/api/v1/buckets/photos", b'{"public": true}')
    status, _, body = raw("GET", f"{s3.url}/photos/file")
    assert (status, body) == (200, b"stored")
    assert raw("HEAD", f"{s3.url}/photos/file")[0] == 200
    for method, path in (
        ("PUT", "/photos/new"),
        ("GET", "/photos"),
        ("DELETE", "/photos/file"),
        ("GET", "/"),
    ):
        status, _, body = raw(method, s3.url + path, body=b"x" if method == "PUT" else None)
        assert (status, error_code(body) if method != "HEAD" else "") == (403, "AccessDenied")


@pytest.mark.parametrize(
    ("change", "expected", "status"),
    [
        ({"key": "reader", "secret": "wrong-secret-0000000000"}, "SignatureDoesNotMatch", 403),
        ({"key": "nobody"}, "InvalidAccessKeyId", 403),
        ({"region": "eu-west-1"}, "AuthorizationHeaderMalformed", 400),
    ],
)
def test_bad_signatures_are_refused_with_their_s3_codes(
    s3: Endpoint, bucket: str, change: dict[str, str], expected: str, status: int
) -> None:
    key = change.get("key", "admin")
    client = s3.client(key, **{k: v for k, v in change.items() if k != "key"})
    with pytest.raises(Exception) as exc:  # noqa: PT011 (botocore's ClientError)
        client.put_object(Bucket="photos", Key="bad", Body=b"x")
    response: Any = getattr(exc.value, "response", {})
    assert (response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]) == (expected, status)
    assert s3.client().list_objects_v2(Bucket="photos", Prefix="bad")["KeyCount"] == 0


def test_a_request_more_than_15_minutes_off_is_too_skewed(s3: Endpoint, bucket: str) -> None:
    s3.app.settings["clock"] = lambda: time.time() + 16 * 60
    url = f"{s3.url}/photos/file"
    status, _, body = raw("GET", url, sign("GET", url))
    assert (status, error_code(body)) == (403, "RequestTimeTooSkewed")


def test_a_signature_missing_parts_is_malformed(s3: Endpoint, bucket: str) -> None:
    url = f"{s3.url}/photos/file"
    headers = sign("GET", url)
    headers["Authorization"] = headers["Authorization"].split(", Signature=")[0]
    status, _, body = raw("GET", url, headers)
    assert (status, error_code(body)) == (400, "AuthorizationHeaderMalformed")


def test_presigned_urls_read_until_they_expire_and_tampering_breaks_them(s3: Endpoint, bucket: str) -> None:
    url = presign("GET", f"{s3.url}/photos/file", expires=60)
    assert raw("GET", url)[::2] == (200, b"stored")
    tampered = [
        url.replace("/photos/file", "/other/file"),
        url.replace("X-Amz-Expires=60", "X-Amz-Expires=600"),
        url[:-4] + ("0000" if not url.endswith("0000") else "1111"),
    ]
    for bad in tampered:
        status, _, body = raw("GET", bad)
        assert (status, error_code(body)) == (403, "SignatureDoesNotMatch"), bad
    s3.app.settings["clock"] = lambda: time.time() + 120
    status, _, body = raw("GET", url)
    assert (status, error_code(body)) == (403, "AccessDenied")
    too_long = presign("GET", f"{s3.url}/photos/file", expires=8 * 24 * 3600)
    assert error_code(raw("GET", too_long)[2]) == "AuthorizationQueryParametersError"


def test_presigned_put_stores_the_body(s3: Endpoint, bucket: str) -> None:
    url = presign("PUT", f"{s3.url}/photos/put")
    assert raw("PUT", url, body=b"signed in the url")[0] == 200
    assert s3.client().get_object(Bucket="photos", Key="put")["Body"].read() == b"signed in the url"


def test_a_body_that_does_not_match_its_signed_hash_is_refused_and_not_stored(
    s3: Endpoint, bucket: str
) -> None:
    url = f"{s3.url}/photos/tampered"
    headers = sign("PUT", url, body=b"what was signed")
    status, _, body = raw("PUT", url, headers, b"what was sent!!")
    assert (status, error_code(body)) == (400, "XAmzContentSHA256Mismatch")
    assert s3.client().list_objects_v2(Bucket="photos", Prefix="tampered")["KeyCount"] == 0


def signing_key(date: str) -> bytes:
    key = ("AWS4" + SECRETS["admin"]).encode()
    for part in (date, REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signed_chunks(headers: dict[str, str], pieces: list[bytes], tamper: int | None = None) -> bytes:
    """An aws-chunked body whose chunk signatures chain from the request's signature."""
    previous = headers["Authorization"].rsplit("Signature=", 1)[1]
    date = headers["X-Amz-Date"]
    scope = f"{date[:8]}/{REGION}/s3/aws4_request"
    key, body = signing_key(date[:8]), b""
    for number, piece in enumerate([*pieces, b""]):
        text = "\n".join(
            ["AWS4-HMAC-SHA256-PAYLOAD", date, scope, previous, hashlib.sha256(b"").hexdigest(),
             hashlib.sha256(piece).hexdigest()]
        )  # fmt: skip
        previous = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        signature = "0" * 64 if number == tamper else previous
        body += f"{len(piece):x};chunk-signature={signature}\r\n".encode() + piece + b"\r\n"
    return body


@pytest.mark.parametrize("tamper", [None, 0, 1, 2])
def test_signed_aws_chunked_bodies_check_every_chunk_signature(
    s3: Endpoint, bucket: str, tamper: int | None
) -> None:
    pieces = [b"a" * 70000, b"b" * 100]
    url = f"{s3.url}/photos/chunked"
    headers = sign(
        "PUT",
        url,
        payload="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        headers={"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": "70100"},
    )
    status, _, body = raw("PUT", url, headers, signed_chunks(headers, pieces, tamper))
    listed = s3.client().list_objects_v2(Bucket="photos", Prefix="chunked")["KeyCount"]
    if tamper is None:
        assert (status, listed) == (200, 1), body
        got = s3.client().get_object(Bucket="photos", Key="chunked")
        assert (got["Body"].read(), got.get("ContentEncoding")) == (b"".join(pieces), None)
    else:
        assert (status, error_code(body), listed) == (403, "SignatureDoesNotMatch", 0)


CHECKSUMS = {
    "crc32": lambda d: zlib.crc32(d).to_bytes(4, "big"),
    "crc32c": lambda d: crc32c.crc32c(d).to_bytes(4, "big"),
    "crc64nvme": lambda d: crc64nvme(d).to_bytes(8, "big"),
    "sha1": lambda d: hashlib.sha1(d).digest(),
    "sha256": lambda d: hashlib.sha256(d).digest(),
}


@pytest.mark.parametrize("algorithm", sorted(CHECKSUMS))
@pytest.mark.parametrize("good", [True, False])
def test_unsigned_trailer_checksums_are_verified(
    s3: Endpoint, bucket: str, algorithm: str, good: bool
) -> None:
    data = b"trailer checked " * 1000
    value = base64.b64encode(CHECKSUMS[algorithm](data if good else data + b"!")).decode()
    body = (
        f"{len(data):x}\r\n".encode()
        + data
        + b"\r\n0\r\n"
        + f"x-amz-checksum-{algorithm}:{value}\r\n\r\n".encode()
    )
    url = f"{s3.url}/photos/trailer"
    headers = sign(
        "PUT",
        url,
        payload="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        headers={
            "Content-Encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(data)),
            "x-amz-trailer": f"x-amz-checksum-{algorithm}",
        },
    )
    status, _, answer = raw("PUT", url, headers, body)
    listed = s3.client().list_objects_v2(Bucket="photos", Prefix="trailer")["KeyCount"]
    assert (status, error_code(answer), listed) == ((200, "", 1) if good else (400, "BadDigest", 0))


def test_a_wrong_content_md5_is_bad_digest(s3: Endpoint, bucket: str) -> None:
    url = f"{s3.url}/photos/md5"
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    headers = sign("PUT", url, body=b"data", headers={"Content-MD5": wrong})
    status, _, body = raw("PUT", url, headers, b"data")
    assert (status, error_code(body)) == (400, "BadDigest")


@pytest.mark.parametrize("body", [b"<Delete><Object>", b"<Other/>", b"<Delete></Delete>", b"\xff\xfe"])
def test_malformed_delete_bodies_are_malformed_xml(s3: Endpoint, bucket: str, body: bytes) -> None:
    url = f"{s3.url}/photos?delete="
    status, _, answer = raw("POST", url, sign("POST", url, body=body), body)
    assert (status, error_code(answer)) == (400, "MalformedXML")
    assert s3.client().list_objects_v2(Bucket="photos")["KeyCount"] == 1


def test_every_answer_has_a_request_id(s3: Endpoint, bucket: str) -> None:
    for url in (f"{s3.url}/photos/file", f"{s3.url}/photos?policy="):
        assert raw("GET", url, sign("GET", url))[1]["x-amz-request-id"]
