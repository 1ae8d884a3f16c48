"""The store's exceptions; every one carries a message that is safe to show a client.

StorageError
├── InvalidName            bad bucket name
├── InvalidKey             bad file key (or listing prefix)
├── NotFound
│   ├── BucketNotFound
│   └── FileNotFound
├── Conflict               a file where a folder is needed, or the reverse
├── PreconditionFailed     an If-Match / If-None-Match condition did not hold
├── BadDigest              the bytes do not match the checksum the client sent
├── InsufficientStorage    the disk is full (ENOSPC, EDQUOT), or too full for a declared size
└── Unavailable            the storage path is missing or lacks xattrs / renameat2
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error the store raises on purpose; its message is safe to show a client."""


class InvalidName(StorageError):
    pass


class InvalidKey(StorageError):
    pass


class NotFound(StorageError):
    pass


class BucketNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"bucket '{name}' not found")


class FileNotFound(NotFound):
    def __init__(self, bucket: str, key: str) -> None:
        super().__init__(f"file '{key}' not found in bucket '{bucket}'")


class Conflict(StorageError):
    pass


class PreconditionFailed(StorageError):
    pass


class BadDigest(StorageError):
    pass


class InsufficientStorage(StorageError):
    pass


class Unavailable(StorageError):
    pass
