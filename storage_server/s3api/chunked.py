"""Request bodies as they stream in: the aws-chunked decoder (each chunk's signature checked
against the previous one, the trailer and its signature), and Payload, which checks a whole body
against x-amz-content-sha256, x-amz-decoded-content-length and the checksums sent."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping

from . import sigv4
from .checksums import Checks
from .errors import S3Error

MAX_LINE = 4096  # a chunk header or trailer line longer than this is refused
MAX_TRAILER = 16 * 1024

_HEADER, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


def _chunk_error(detail: str) -> S3Error:
    return S3Error("InvalidChunkSizeError", detail)


class ChunkedDecoder:
    """Decode an aws-chunked body, passing each chunk's bytes to `out`. With `signed`, every
    chunk's signature is checked (a mismatch raises SignatureDoesNotMatch); with `trailer`, the
    body ends with trailer headers, returned by finish."""

    def __init__(self, out: Callable[[bytes], None], *, signed: sigv4.Signed | None, trailer: bool) -> None:
        self._out = out
        self._signed = signed
        self._previous = signed.signature if signed is not None else ""
        self._trailer = trailer
        self._buffer = bytearray()
        self._state = _HEADER
        self._left = 0
        self._signature = ""
        self._hash = hashlib.sha256()
        self._trailer_bytes = 0
        self.trailers: dict[str, str] = {}
        self._trailer_signature: str | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while self._buffer and self._state != _DONE:
            if self._state == _DATA:
                take = min(self._left, len(self._buffer))
                piece = bytes(self._buffer[:take])
                del self._buffer[:take]
                self._left -= take
                if self._signed is not None:
                    self._hash.update(piece)
                self._out(piece)
                if self._left == 0:
                    self._end_chunk()
                continue
            line = self._line()
            if line is None:
                return
            if self._state == _HEADER:
                self._header(line)
            elif self._state == _DATA_END:
                if line:
                    raise _chunk_error("a chunk's data is longer than its size")
                self._state = _HEADER
            else:
                self._trailer_line(line)
        if self._state == _DONE and self._buffer.strip():
            raise _chunk_error("bytes after the end of the aws-chunked body")

    def _line(self) -> str | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > MAX_LINE:
                raise _chunk_error("a chunk header is too long")
            return None
        raw = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise _chunk_error("a chunk header is not ASCII") from None

    def _header(self, line: str) -> None:
        size_text, _, extension = line.partition(";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise _chunk_error(f"'{size_text[:32]}' is not a hex chunk size") from None
        if size < 0:
            raise _chunk_error("a chunk size is negative")
        if self._signed is not None:
            name, _, value = extension.partition("=")
            if name.strip() != "chunk-signature" or not value:
                raise S3Error("SignatureDoesNotMatch", "a chunk has no chunk-signature")
            self._signature = value.strip()
        self._hash = hashlib.sha256()
        self._left = size
        if size == 0:
            self._check_chunk()
            self._state = _TRAILER
        else:
            self._state = _DATA

    def _end_chunk(self) -> None:
        self._check_chunk()
        self._state = _DATA_END

    def _check_chunk(self) -> None:
        if self._signed is None:
            return
        text = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                self._signed.amz_date,
                self._signed.scope,
                self._previous,
                sigv4.EMPTY_SHA256,
                self._hash.hexdigest(),
            ]
        )
        expected = sigv4.sign(self._signed.signing_key, text)
        if not hmac.compare_digest(expected.encode(), self._signature.encode()):
            raise S3Error("SignatureDoesNotMatch", "a chunk's signature does not match")
        self._previous = expected

    def _trailer_line(self, line: str) -> None:
        self._trailer_bytes += len(line) + 2
        if self._trailer_bytes > MAX_TRAILER:
            raise _chunk_error("the trailer is too long")
        if not line:
            self._state = _DONE
            return
        if not self._trailer:
            raise _chunk_error("a trailer the request did not announce")
        name, sep, value = line.partition(":")
        if not sep:
            raise _chunk_error("a trailer line is not name:value")
        name = name.strip().lower()
        if name == "x-amz-trailer-signature":
            self._trailer_signature = value.strip()
        else:
            self.trailers[name] = value.strip()

    def finish(self) -> dict[str, str]:
        """The trailers; raise IncompleteBody when the body stopped before its end."""
        if self._state != _DONE:
            raise S3Error("IncompleteBody", "the aws-chunked body ended before its last chunk")
        if self._signed is not None and self._trailer:
            canonical = "".join(f"{n}:{v}\n" for n, v in self.trailers.items())
            text = "\n".join(
                [
                    "AWS4-HMAC-SHA256-TRAILER",
                    self._signed.amz_date,
                    self._signed.scope,
                    self._previous,
                    hashlib.sha256(canonical.encode()).hexdigest(),
                ]
            )
            expected = sigv4.sign(self._signed.signing_key, text)
            given = self._trailer_signature or ""
            if not hmac.compare_digest(expected.encode(), given.encode()):
                raise S3Error("SignatureDoesNotMatch", "the trailer's signature does not match")
        return self.trailers


class Payload:
    """One request body: fed as it streams (decoded when aws-chunked), written to `write`, and
    checked at `finish` against what the request promised. `sha256_of`, when given, is the hex
    SHA-256 of what `write` received (an upload hashes its bytes anyway)."""

    def __init__(
        self,
        signed: sigv4.Signed | None,
        headers: Mapping[str, str],
        write: Callable[[bytes], None],
        sha256_of: Callable[[], str] | None = None,
    ) -> None:
        self.mode = signed.payload if signed is not None else sigv4.UNSIGNED
        self.checks = Checks(headers)
        self.received = 0
        self._write = write
        self._sha256_of = sha256_of
        self._hash = hashlib.sha256() if sha256_of is None and self.mode not in _NOT_HEX else None
        self._decoded = _length(headers.get("x-amz-decoded-content-length"))
        self._decoder: ChunkedDecoder | None = None
        if self.mode in sigv4.STREAMING:
            if self._decoded is None:
                raise S3Error("MissingContentLength", "aws-chunked bodies need x-amz-decoded-content-length")
            self._decoder = ChunkedDecoder(
                self._out,
                signed=signed if self.mode != sigv4.STREAMING_UNSIGNED_TRAILER else None,
                trailer=self.mode != sigv4.STREAMING_SIGNED,
            )

    @property
    def size(self) -> int | None:
        """The decoded body's size, when the request says it."""
        return self._decoded

    def feed(self, data: bytes) -> None:
        if self._decoder is not None:
            self._decoder.feed(data)
        else:
            self._out(data)

    def _out(self, data: bytes) -> None:
        self.received += len(data)
        if self._decoded is not None and self.received > self._decoded:
            raise S3Error("IncompleteBody", "the body is longer than x-amz-decoded-content-length")
        self.checks.update(data)
        if self._hash is not None:
            self._hash.update(data)
        self._write(data)

    def finish(self) -> None:
        """Raise the S3Error of the first promise the body broke: IncompleteBody,
        XAmzContentSHA256Mismatch, SignatureDoesNotMatch (a chunk, the trailer), BadDigest."""
        trailers = self._decoder.finish() if self._decoder is not None else {}
        if self._decoded is not None and self.received != self._decoded:
            raise S3Error("IncompleteBody", "the body is shorter than x-amz-decoded-content-length")
        if self.mode not in _NOT_HEX:
            digest = self._sha256_of() if self._sha256_of is not None else self._hash.hexdigest()  # type: ignore[union-attr]
            if digest != self.mode:
                raise S3Error("XAmzContentSHA256Mismatch", "the body does not match x-amz-content-sha256")
        self.checks.verify(trailers)


_NOT_HEX = {sigv4.UNSIGNED, *sigv4.STREAMING}


def _length(value: str | None) -> int | None:
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()):
        raise S3Error("InvalidArgument", "x-amz-decoded-content-length is not a number")
    return int(value)
