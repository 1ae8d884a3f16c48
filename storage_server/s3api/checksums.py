"""The checksums an S3 client may send with an upload, as a header or in an aws-chunked body's
trailer (x-amz-checksum-crc32, -crc32c, -crc64nvme, -sha1, -sha256), and Content-MD5: computed
over the bytes as they stream and compared at the end."""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import Callable, Mapping

import crc32c as _crc32c

from .errors import S3Error

_CRC64NVME_POLY = 0x9A6C9329AC4BC9B5  # reflected
_MASK64 = (1 << 64) - 1


def _crc64_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ _CRC64NVME_POLY if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC64_TABLE = _crc64_table()


class _Crc:
    """A CRC as a hashlib-like object: update, then digest (big-endian bytes)."""

    def __init__(self, step: Callable[[bytes, int], int], size: int) -> None:
        self._step, self._size, self._value = step, size, 0

    def update(self, data: bytes) -> None:
        self._value = self._step(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(self._size, "big")


def crc64nvme(data: bytes, value: int = 0) -> int:
    """CRC-64/NVME in pure Python (no wheel ships it): a byte at a time, so slow on big bodies."""
    crc = value ^ _MASK64
    table = _CRC64_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ _MASK64


def _crc32(data: bytes, value: int) -> int:
    return zlib.crc32(data, value)


def _crc32c_step(data: bytes, value: int) -> int:
    return int(_crc32c.crc32c(data, value))


ALGORITHMS: dict[str, Callable[[], _Crc | hashlib._Hash]] = {
    "crc32": lambda: _Crc(_crc32, 4),
    "crc32c": lambda: _Crc(_crc32c_step, 4),
    "crc64nvme": lambda: _Crc(crc64nvme, 8),
    "sha1": hashlib.sha1,
    "sha256": hashlib.sha256,
}
PREFIX = "x-amz-checksum-"


def _decode(value: str, header: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise S3Error("InvalidDigest", f"{header} is not base64") from None


class Checks:
    """The checksums one upload must match: Content-MD5, an x-amz-checksum-* header, or the
    one the x-amz-trailer header announces (its value comes in the body's trailer)."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self.expected: dict[str, bytes] = {}
        self.hashers: dict[str, _Crc | hashlib._Hash] = {}
        self.trailer: str | None = None
        if (md5 := headers.get("content-md5")) is not None:
            self.expected["content-md5"] = _decode(md5, "Content-MD5")
            self.hashers["content-md5"] = hashlib.md5()
        for name, value in headers.items():
            algorithm = name[len(PREFIX) :]
            if name.startswith(PREFIX) and algorithm in ALGORITHMS:
                self.expected[algorithm] = _decode(value, name)
                self.hashers[algorithm] = ALGORITHMS[algorithm]()
        if (trailer := headers.get("x-amz-trailer")) is not None:
            algorithm = trailer.strip().lower().removeprefix(PREFIX)
            if not trailer.strip().lower().startswith(PREFIX) or algorithm not in ALGORITHMS:
                raise S3Error(
                    "InvalidArgument", f"x-amz-trailer '{trailer}' is not a checksum this endpoint knows"
                )
            self.trailer = algorithm
            self.hashers.setdefault(algorithm, ALGORITHMS[algorithm]())

    def update(self, data: bytes) -> None:
        for hasher in self.hashers.values():
            hasher.update(data)

    def verify(self, trailers: Mapping[str, str]) -> None:
        """Raise BadDigest unless every checksum matches the bytes; InvalidRequest when the
        trailer announced is missing."""
        expected = dict(self.expected)
        if self.trailer is not None:
            value = trailers.get(PREFIX + self.trailer)
            if value is None:
                raise S3Error("InvalidRequest", f"the trailer {PREFIX}{self.trailer} is missing")
            expected[self.trailer] = _decode(value, PREFIX + self.trailer)
        for name, digest in expected.items():
            if self.hashers[name].digest() != digest:
                label = "Content-MD5" if name == "content-md5" else PREFIX + name
                raise S3Error("BadDigest", f"the bytes do not match {label}; nothing is stored")

    def echo(self) -> dict[str, str]:
        """The x-amz-checksum-* headers to answer with: the checksums that were checked."""
        return {
            PREFIX + name: base64.b64encode(hasher.digest()).decode()
            for name, hasher in self.hashers.items()
            if name != "content-md5"
        }
