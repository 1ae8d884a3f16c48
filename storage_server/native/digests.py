"""Checksums a client may send with an upload, checked before anything becomes visible.

Content-MD5 (RFC 1864) and Content-Digest (RFC 9530) describe the request body as sent;
Repr-Digest (RFC 9530) and X-Checksum-SHA256 (hex) describe the stored file. For a raw body the
two are the same bytes; for a multipart body the first pair covers the whole multipart message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

from ..store.errors import BadDigest

ALGORITHMS: dict[str, Callable[[], Any]] = {
    "md5": hashlib.md5,
    "sha-256": hashlib.sha256,
    "sha-512": hashlib.sha512,
}
_SIZES = {"md5": 16, "sha-256": 32, "sha-512": 64}
_MEMBER = re.compile(r"\s*([a-z][a-z0-9_.*-]*)\s*=\s*:([A-Za-z0-9+/=]*):\s*(?:;[^,]*)?$")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


class MalformedDigest(Exception):
    """A checksum header that cannot be parsed (400 invalid_digest)."""


def _b64(value: str, algorithm: str, header: str) -> bytes:
    try:
        raw = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise MalformedDigest(f"{header} is not valid base64") from None
    if len(raw) != _SIZES[algorithm]:
        raise MalformedDigest(f"{header} has the wrong length for {algorithm}")
    return raw


def _dictionary(value: str, header: str) -> dict[str, bytes]:
    """The supported members of an RFC 9530 digest dictionary; unknown algorithms are ignored."""
    found = {}
    for member in value.split(","):
        match = _MEMBER.match(member)
        if not match:
            raise MalformedDigest(f"{header} is not a digest dictionary like sha-256=:base64:")
        algorithm, encoded = match.groups()
        if algorithm in ("sha-256", "sha-512"):
            found[algorithm] = _b64(encoded, algorithm, header)
    return found


class Checks:
    """The digests one upload promised, and the hashers that verify them as bytes stream by."""

    def __init__(self, body: dict[str, bytes], file: dict[str, bytes]) -> None:
        self.body = body
        self.file = file
        self._body_hashers = {name: ALGORITHMS[name]() for name in body}
        # The store computes the file's sha-256 anyway: only hash the others again.
        self._file_hashers = {name: ALGORITHMS[name]() for name in file if name != "sha-256"}

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], *, multipart: bool) -> Checks | None:
        """The checks the headers ask for, or None; raise MalformedDigest."""
        body: dict[str, bytes] = {}
        file: dict[str, bytes] = {}
        if (md5 := headers.get("Content-MD5")) is not None:
            body["md5"] = _b64(md5.strip(), "md5", "Content-MD5")
        if (content := headers.get("Content-Digest")) is not None:
            body.update(_dictionary(content, "Content-Digest"))
        if (repr_digest := headers.get("Repr-Digest")) is not None:
            file.update(_dictionary(repr_digest, "Repr-Digest"))
        if (hex_sha := headers.get("X-Checksum-SHA256")) is not None:
            if not _HEX_SHA256.fullmatch(hex_sha.strip()):
                raise MalformedDigest("X-Checksum-SHA256 is 64 hex digits")
            claimed = bytes.fromhex(hex_sha.strip())
            if file.get("sha-256", claimed) != claimed:
                raise BadDigest("Repr-Digest and X-Checksum-SHA256 disagree")
            file["sha-256"] = claimed
        if not multipart:  # the body is the file: check it once, as the file
            for name, digest in body.items():
                if file.setdefault(name, digest) != digest:
                    raise BadDigest(f"the body and file {name} checksums disagree")
            body = {}
        return cls(body, file) if body or file else None

    def update_body(self, chunk: bytes) -> None:
        for hasher in self._body_hashers.values():
            hasher.update(chunk)

    def update_file(self, chunk: bytes | bytearray | memoryview) -> None:
        for hasher in self._file_hashers.values():
            hasher.update(chunk)

    def verify(self, file_sha256_hex: str) -> None:
        """Raise BadDigest unless every promised digest matches what streamed by."""
        actual = {name: h.digest() for name, h in self._file_hashers.items()}
        actual["sha-256"] = bytes.fromhex(file_sha256_hex)
        for name, expected in self.file.items():
            if actual[name] != expected:
                raise BadDigest(f"the file's {name} does not match the checksum sent")
        for name, expected in self.body.items():
            if self._body_hashers[name].digest() != expected:
                raise BadDigest(f"the body's {name} does not match the checksum sent")
