"""The one place that picks a backend for the settings: `blobfs.BlobStore` (files on a local
filesystem) or `s3.store.S3Store` (objects in an S3-compatible engine). It sits above both; no
backend imports it."""

from __future__ import annotations

from .settings import Settings
from .store.contract import Store


def threads_for(config: Settings) -> int:
    """How many threads the store's calls should get: most of them wait (on the engine, or on
    a disk flush, a lock or a group commit), so far more than CPUs."""
    if config.backend == "s3":
        from .s3 import THREADS  # no botocore: only the constant

        return THREADS
    from .fs import THREADS as FS_THREADS

    return FS_THREADS


def open_store(config: Settings) -> Store:
    """The store the settings choose (not yet prepared)."""
    if config.backend == "s3":
        from .s3.store import S3Store  # botocore is loaded only when it is used

        return S3Store.for_settings(config)
    from .blobfs import BlobStore

    return BlobStore.for_settings(config)
