"""The S3 store's local spool: one flock'ed file per upload holds the part being filled."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from ..store.localdisk import open_locked, sweep_folder

SPOOL_DIR = ".storage-server/spool"


class Spool:
    """The local folder of part files, and the size of a part."""

    def __init__(self, root: Path, part_size: int) -> None:
        self.folder = Path(os.path.abspath(root)) / SPOOL_DIR
        self.part_size = part_size

    def prepare(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)

    def open(self) -> tuple[Path, int]:
        """A new part file, flock'ed for its lifetime so that sweep() keeps off it."""
        path = self.folder / f"{uuid.uuid4().hex}.part"
        return path, open_locked(path, os.O_RDWR)

    def sweep(self, grace: float) -> int:
        return sweep_folder(self.folder, grace)

    def is_writable(self) -> bool:
        try:
            path, fd = self.open()
        except OSError:
            return False
        os.close(fd)
        path.unlink()
        return True
