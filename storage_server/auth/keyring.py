"""The keys of STORAGE_KEYS_FILE: loading and checking the file, finding the key a secret belongs
to (in constant time), and what each key may do.

    [[keys]]
    id = "selfdb-backend"             # the access key id (also for the S3 protocol)
    secret = "at least 16 characters"
    access = "admin"                  # read | write | admin
    buckets = ["*"]                   # names, or "*" for all (the default)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import tomllib
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

MIN_SECRET = 16


class Access(IntEnum):
    """What a key may do; each level includes the ones below it."""

    READ = 1  # list and get buckets, list and download files
    WRITE = 2  # also upload, delete, copy, move, batch delete, sign URLs
    ADMIN = 3  # also create, update and delete buckets


class KeysFileError(Exception):
    """The keys file cannot be used; the message says why (never a secret)."""


@dataclass(frozen=True)
class Key:
    id: str
    secret: str
    access: Access
    buckets: frozenset[str]  # {"*"} for all

    def __repr__(self) -> str:  # never show the secret
        return f"Key(id={self.id!r}, access={self.access.name.lower()}, buckets={sorted(self.buckets)})"

    def may(self, access: Access, bucket: str | None = None) -> bool:
        """Whether this key has `access` (on `bucket`, when the action concerns one)."""
        if self.access < access:
            return False
        return bucket is None or "*" in self.buckets or bucket in self.buckets

    def sees(self, bucket: str) -> bool:
        return "*" in self.buckets or bucket in self.buckets


class Keyring:
    """The configured keys (none: the service is open)."""

    def __init__(self, keys: list[Key]) -> None:
        self.keys = keys
        self._by_id = {k.id: k for k in keys}
        self._digests = [(hashlib.sha256(k.secret.encode()).digest(), k) for k in keys]

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def by_secret(self, secret: str) -> Key | None:
        """The key whose secret this is. Every key is compared, each in constant time, so the
        time taken says nothing about which key, or how much of one, matched."""
        given = hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()
        found = None
        for digest, key in self._digests:
            if hmac.compare_digest(digest, given):
                found = key
        return found

    def by_id(self, key_id: str) -> Key | None:
        return self._by_id.get(key_id)

    @classmethod
    def load(cls, path: Path | None) -> Keyring:
        """The keys of `path` (None: no keys); raise KeysFileError when it cannot be used."""
        if path is None:
            return cls([])
        try:
            info = os.stat(path)
            if not stat.S_ISREG(info.st_mode):
                raise KeysFileError(f"the keys file {path} is not a regular file")
            if info.st_mode & 0o077:
                raise KeysFileError(
                    f"the keys file {path} is open to other users (mode {stat.S_IMODE(info.st_mode):o});"
                    " make it 0600"
                )
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise KeysFileError(f"cannot read the keys file {path}: {exc.__class__.__name__}") from None
        except tomllib.TOMLDecodeError as exc:
            raise KeysFileError(f"the keys file {path} is not valid TOML: {exc}") from None
        return cls(_parse(data, path))


def _parse(data: dict[str, object], path: Path) -> list[Key]:
    entries = data.get("keys")
    unknown = set(data) - {"keys"}
    if unknown:
        raise KeysFileError(f"{path}: unknown top-level entries {sorted(unknown)}; only [[keys]]")
    if not isinstance(entries, list) or not entries:
        raise KeysFileError(f"{path}: no [[keys]] entries")
    keys: list[Key] = []
    for number, entry in enumerate(entries, start=1):
        where = f"{path}: key #{number}"
        if not isinstance(entry, dict):
            raise KeysFileError(f"{where} is not a table")
        extra = set(entry) - {"id", "secret", "access", "buckets"}
        if extra:
            raise KeysFileError(f"{where}: unknown fields {sorted(extra)}")
        key_id, secret, access = entry.get("id"), entry.get("secret"), entry.get("access")
        buckets = entry.get("buckets", ["*"])
        if not isinstance(key_id, str) or not key_id or not key_id.isascii() or not key_id.isprintable():
            raise KeysFileError(f"{where}: `id` must be a non-empty printable ASCII string")
        where = f"{path}: key {key_id!r}"
        if any(k.id == key_id for k in keys):
            raise KeysFileError(f"{where} is listed twice")
        if not isinstance(secret, str) or len(secret) < MIN_SECRET:
            raise KeysFileError(f"{where}: `secret` must be at least {MIN_SECRET} characters")
        if access not in ("read", "write", "admin"):
            raise KeysFileError(f"{where}: `access` must be read, write or admin")
        if not isinstance(buckets, list) or not buckets or not all(isinstance(b, str) and b for b in buckets):
            raise KeysFileError(f'{where}: `buckets` must be a list of bucket names or "*"')
        keys.append(Key(key_id, secret, Access[access.upper()], frozenset(buckets)))
    return keys
