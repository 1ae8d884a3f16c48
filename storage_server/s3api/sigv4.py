"""AWS Signature Version 4 as S3 checks it: the canonical request, the string to sign, the
signing key, and the two places a signature rides (the Authorization header, or the query string
of a presigned URL), with the clock skew and presigned expiry rules. Secrets are compared with
hmac.compare_digest."""

from __future__ import annotations

import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ..auth.keyring import Key, Keyring
from .errors import S3Error

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING = {STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER}
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW = 15 * 60  # seconds a signed request's time may be off ours
MAX_EXPIRES = 7 * 24 * 3600  # the longest a presigned URL may live
_HEX64 = re.compile(r"[0-9a-f]{64}")
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_UNRESERVED = "-_.~"


@dataclass(frozen=True)
class Signed:
    """A request whose signature held: the key, and what its body must still prove."""

    key: Key
    payload: str  # x-amz-content-sha256: a hex digest, UNSIGNED-PAYLOAD or a STREAMING-* mode
    signature: str  # the seed signature that chunk signatures chain from
    signing_key: bytes
    amz_date: str
    scope: str


def uri_encode(value: str, *, slash: bool) -> str:
    """S3's URI encoding: every byte but A-Z a-z 0-9 - _ . ~ (and "/" in a path) as %XX."""
    return urllib.parse.quote(value, safe=_UNRESERVED + ("/" if slash else ""))


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """The query string's (name, value) pairs, percent-decoded, blank values kept."""
    pairs = []
    for item in raw_query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((urllib.parse.unquote(name), urllib.parse.unquote(value)))
    return pairs


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    signed_headers: list[str],
    payload: str,
) -> str:
    """The canonical request of SigV4 (S3 flavour: the path is encoded once, not normalized)."""
    encoded = sorted((uri_encode(n, slash=False), uri_encode(v, slash=False)) for n, v in query)
    canonical_query = "&".join(f"{n}={v}" for n, v in encoded)
    lines = "".join(f"{name}:{headers.get(name, '')}\n" for name in signed_headers)
    return "\n".join(
        [method, uri_encode(path, slash=True), canonical_query, lines, ";".join(signed_headers), payload]
    )


def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    key = _hmac(("AWS4" + secret).encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return key


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    return "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])


def sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def normalize_header(values: list[str]) -> str:
    """A header's canonical value: each value trimmed, inner runs of spaces made one, joined by ','."""
    return ",".join(" ".join(v.split()) for v in values)


def parse_amz_date(value: str) -> datetime:
    try:
        return datetime.strptime(value, _AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise S3Error("AccessDenied", "X-Amz-Date is not a date of the form 20060102T150405Z") from None


@dataclass(frozen=True)
class Credential:
    key_id: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def parse_credential(value: str, region: str) -> Credential:
    """`AKID/20060102/region/s3/aws4_request`; raise AuthorizationHeaderMalformed."""
    parts = value.split("/")
    if len(parts) < 5 or parts[-1] != "aws4_request":
        raise S3Error(
            "AuthorizationHeaderMalformed", "the Credential is not AKID/date/region/s3/aws4_request"
        )
    credential = Credential("/".join(parts[:-4]), *parts[-4:-1])
    if credential.service != "s3":
        raise S3Error("AuthorizationHeaderMalformed", "the Credential's service is not s3")
    if credential.region != region:
        raise S3Error(
            "AuthorizationHeaderMalformed",
            f"the region '{credential.region}' is wrong; expecting '{region}'",
            region=region,
        )
    return credential


def parse_authorization(value: str) -> tuple[str, list[str], str]:
    """(credential, signed headers, signature) of an `AWS4-HMAC-SHA256 ...` Authorization."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise S3Error("AuthorizationHeaderMalformed", "only AWS4-HMAC-SHA256 signatures are supported")
    fields: dict[str, str] = {}
    for item in rest.split(","):
        name, _, field = item.strip().partition("=")
        fields[name] = field
    try:
        return fields["Credential"], fields["SignedHeaders"].split(";"), fields["Signature"]
    except KeyError:
        raise S3Error(
            "AuthorizationHeaderMalformed", "Credential, SignedHeaders and Signature are all needed"
        ) from None


@dataclass(frozen=True)
class Request:
    """What of a request the signature covers."""

    method: str
    path: str  # decoded
    raw_query: str
    headers: Mapping[str, list[str]]  # lowercase names

    def header(self, name: str) -> str | None:
        values = self.headers.get(name)
        return values[-1] if values else None

    def query(self) -> list[tuple[str, str]]:
        return query_pairs(self.raw_query)


def verify_header(keyring: Keyring, request: Request, region: str, now: float) -> Signed:
    """Check an Authorization-header signature; raise the S3Error a client should see."""
    credential_text, signed_headers, signature = parse_authorization(request.header("authorization") or "")
    credential = parse_credential(credential_text, region)
    payload = request.header("x-amz-content-sha256")
    if payload is None:
        raise S3Error("InvalidRequest", "x-amz-content-sha256 is required with a signed request")
    if payload not in STREAMING and payload != UNSIGNED and not _HEX64.fullmatch(payload):
        raise S3Error("InvalidArgument", "x-amz-content-sha256 is not a hex SHA-256 or a known mode")
    amz_date = request.header("x-amz-date")
    if amz_date is None:
        raise S3Error("AccessDenied", "X-Amz-Date is required with a signed request")
    when = parse_amz_date(amz_date)
    if abs(when.timestamp() - now) > MAX_SKEW:
        raise S3Error("RequestTimeTooSkewed", "the request's time is more than 15 minutes from ours")
    return _check(keyring, request, credential, amz_date, signed_headers, signature, payload, request.query())


def verify_query(keyring: Keyring, request: Request, region: str, now: float) -> Signed:
    """Check a presigned URL (X-Amz-* in the query); raise the S3Error a client should see."""
    query = request.query()
    values = dict(query)
    if values.get("X-Amz-Algorithm") != ALGORITHM:
        raise S3Error("AuthorizationQueryParametersError", "X-Amz-Algorithm must be AWS4-HMAC-SHA256")
    try:
        credential_text, amz_date = values["X-Amz-Credential"], values["X-Amz-Date"]
        signed_headers, signature = values["X-Amz-SignedHeaders"].split(";"), values["X-Amz-Signature"]
        expires = int(values["X-Amz-Expires"])
    except (KeyError, ValueError):
        raise S3Error(
            "AuthorizationQueryParametersError",
            "X-Amz-Credential, -Date, -Expires, -SignedHeaders and -Signature are all needed",
        ) from None
    if not 0 < expires <= MAX_EXPIRES:
        raise S3Error("AuthorizationQueryParametersError", "X-Amz-Expires must be 1 to 604800 seconds")
    credential = parse_credential(credential_text, region)
    when = parse_amz_date(amz_date).timestamp()
    if now > when + expires:
        raise S3Error("AccessDenied", "Request has expired")
    if when - now > MAX_SKEW:
        raise S3Error("RequestTimeTooSkewed", "the request's time is more than 15 minutes from ours")
    payload = values.get("X-Amz-Content-Sha256", UNSIGNED)
    unsigned = [(n, v) for n, v in query if n != "X-Amz-Signature"]
    return _check(keyring, request, credential, amz_date, signed_headers, signature, payload, unsigned)


def _check(
    keyring: Keyring,
    request: Request,
    credential: Credential,
    amz_date: str,
    signed_headers: list[str],
    signature: str,
    payload: str,
    query: list[tuple[str, str]],
) -> Signed:
    if "host" not in signed_headers:
        raise S3Error("AccessDenied", "the signature must cover the Host header")
    if not amz_date.startswith(credential.date):
        raise S3Error("SignatureDoesNotMatch", "the Credential's date is not the request's date")
    key = keyring.by_id(credential.key_id)
    if key is None:
        raise S3Error("InvalidAccessKeyId", "the access key id is not known")
    headers = {name: normalize_header(request.headers.get(name, [])) for name in signed_headers}
    canonical = canonical_request(request.method, request.path, query, headers, signed_headers, payload)
    text = string_to_sign(amz_date, credential.scope, canonical)
    derived = signing_key(key.secret, credential.date, credential.region)
    expected = sign(derived, text)
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogateescape")):
        raise S3Error("SignatureDoesNotMatch", "the request signature does not match")
    return Signed(key, payload, signature, derived, amz_date, credential.scope)


def is_presigned(raw_query: str) -> bool:
    return "X-Amz-Signature=" in raw_query or "X-Amz-Credential=" in raw_query
