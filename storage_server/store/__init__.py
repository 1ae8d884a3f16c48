"""The store contract every backend implements and every front door calls: its Protocols
(`contract.py`), records (`records.py`), errors (`errors.py`), key rules (`keys.py`) and the
index of damaged files (`damage.py`).
This package imports nothing of HTTP and nothing of any backend."""

from .contract import Buckets, Files, Integrity, Lifecycle, Precondition, Reader, ScrubLock, Store, Upload
from .records import BucketChanges, BucketRecord, Damage, FileRecord, Page, ScrubState, now

__all__ = [
    "BucketChanges",
    "BucketRecord",
    "Buckets",
    "Damage",
    "FileRecord",
    "Files",
    "Integrity",
    "Lifecycle",
    "Page",
    "Precondition",
    "Reader",
    "ScrubLock",
    "ScrubState",
    "Store",
    "Upload",
    "now",
]
