"""Signed URLs: a file's URL with query parameters that let whoever holds it GET (and HEAD) or
upload that one file until it expires, without a key of their own. The signature is an
HMAC-SHA256, with the issuing key's secret, over the method, bucket, path, expiry, key id and
upsert flag; removing the key revokes every URL it signed."""

from __future__ import annotations

import hashlib
import hmac
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from .keyring import Access, Key, Keyring

VERSION = "v1"
# Query parameters of a signed URL.
METHOD = "X-Sign-Method"
EXPIRES = "X-Sign-Expires"
KEY_ID = "X-Sign-Key"
UPSERT = "X-Sign-Upsert"
SIGNATURE = "X-Sign-Signature"
PARAMS = (METHOD, EXPIRES, KEY_ID, UPSERT, SIGNATURE)
MAX_EXPIRES_IN = 7 * 24 * 3600


class SignatureExpired(Exception):
    pass


class SignatureInvalid(Exception):
    pass


@dataclass(frozen=True)
class Grant:
    """What a valid signed URL allows: `method` ("GET" or "PUT") on one file, by `key`."""

    method: str
    bucket: str
    path: str
    upsert: bool
    key: Key


def _mac(secret: str, method: str, bucket: str, path: str, expires: int, key_id: str, upsert: bool) -> str:
    message = "\n".join((VERSION, method, bucket, path, str(expires), key_id, "1" if upsert else "0"))
    return hmac.new(secret.encode(), message.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def sign(key: Key, method: str, bucket: str, path: str, expires: int, upsert: bool) -> str:
    """The query string of a signed URL for `method` on bucket/path until `expires` (Unix time)."""
    query = {
        METHOD: method,
        EXPIRES: str(expires),
        KEY_ID: key.id,
        UPSERT: "1" if upsert else "0",
        SIGNATURE: _mac(key.secret, method, bucket, path, expires, key.id, upsert),
    }
    return urllib.parse.urlencode(query)


def is_signed(query: Mapping[str, object]) -> bool:
    return SIGNATURE in query


def verify(keyring: Keyring, query: Mapping[str, str], bucket: str, path: str, now: float) -> Grant:
    """The grant of a signed URL's query for bucket/path; raise SignatureExpired when it is past
    its expiry, SignatureInvalid for anything else wrong (never saying what)."""
    try:
        method, key_id, signature = query[METHOD], query[KEY_ID], query[SIGNATURE]
        expires, upsert = int(query[EXPIRES]), {"0": False, "1": True}[query[UPSERT]]
    except (KeyError, ValueError):
        raise SignatureInvalid() from None
    key = keyring.by_id(key_id)
    # A MAC is computed even for an unknown key, so that both take the same time.
    secret = key.secret if key is not None else "\0" * 32
    expected = _mac(secret, method, bucket, path, expires, key_id, upsert)
    if (
        not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "surrogateescape"))
        or key is None
    ):
        raise SignatureInvalid()
    if method not in ("GET", "PUT") or not key.may(Access.READ if method == "GET" else Access.WRITE, bucket):
        raise SignatureInvalid()
    if expires < now:
        raise SignatureExpired()
    return Grant(method, bucket, path, upsert, key)
