"""The store's exceptions; every one carries a message that is safe to show a client.

StorageError
├── InvalidName            bad bucket name
├── InvalidKey             bad file key (or listing prefix)
├── NotFound
│   ├── BucketNotFound
│   ├── FileNotFound
│   └── NoSuchUpload       a staged upload that was completed, aborted, expired or never was
├── Conflict               a file where a folder is needed, or the reverse
├── PreconditionFailed     an If-Match / If-None-Match condition did not hold
├── FileChanged            the version a reader opened was replaced before its bytes were read
├── Damaged                the file's stored bytes no longer match the sha256 taken at upload
├── BadDigest              the bytes do not match the checksum the client sent
├── InvalidPart            a staged upload's part number out of range, or not uploaded
├── Locked                 another request is writing to this staged upload
├── TooLarge               the file is larger than its bucket's file_size_limit
├── TypeNotAllowed         the file's content type is not in its bucket's allowed_mime_types
├── InsufficientStorage    the disk is full (ENOSPC, EDQUOT), or too full for a declared size
└── Unavailable            the storage path or the object store cannot be used now
    └── (s3) Missing       the engine has no such object: internal to the S3 backend, which
                           turns it into its own not-found before it leaves the store
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


class FileChanged(StorageError):
    def __init__(self, bucket: str, key: str) -> None:
        super().__init__(f"file '{key}' in bucket '{bucket}' changed while it was being read; try again")


class Damaged(StorageError):
    def __init__(self, bucket: str, key: str) -> None:
        super().__init__(
            f"file '{key}' in bucket '{bucket}' is damaged: its stored bytes no longer match the "
            "checksum taken at upload; re-upload it"
        )


class BadDigest(StorageError):
    pass


class TooLarge(StorageError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the bucket takes files of at most {limit} bytes")


class TypeNotAllowed(StorageError):
    def __init__(self, content_type: str) -> None:
        super().__init__(f"the bucket does not take files of type '{content_type}'")


class InsufficientStorage(StorageError):
    pass


class Unavailable(StorageError):
    pass


class NoSuchUpload(NotFound):
    def __init__(self, upload_id: str) -> None:
        super().__init__(f"no staged upload '{upload_id[:64]}' (completed, aborted or expired)")


class InvalidPart(StorageError):
    pass


class Locked(StorageError):
    def __init__(self) -> None:
        super().__init__("another request is writing to this upload")
