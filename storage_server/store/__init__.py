"""The store contract every backend implements and every front door calls: its Protocols
(`contract.py`), records (`records.py`), errors (`errors.py`) and key rules (`keys.py`).
This package imports nothing of HTTP and nothing of any backend."""

from .contract import Buckets, Files, Lifecycle, Precondition, Reader, Store, Upload
from .records import BucketChanges, BucketRecord, FileRecord, Page, now

__all__ = [
    "BucketChanges",
    "BucketRecord",
    "Buckets",
    "FileRecord",
    "Files",
    "Lifecycle",
    "Page",
    "Precondition",
    "Reader",
    "Store",
    "Upload",
    "now",
]
