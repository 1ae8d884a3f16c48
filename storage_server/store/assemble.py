"""What every backend does the same with staged parts: copying a stored part into a writer, and
completing a staged upload (its parts, in the order asked, streamed into an ordinary upload and
committed through it, so that the bucket's limits and the conditions hold as for any upload).
A backend gives only how to read one of its parts."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator, Mapping, Sequence

from .contract import PartUpload, Precondition, Upload
from .errors import InvalidPart
from .records import FileRecord, StagedRecord

Chunks = Generator[bytes, None, None]
# The bytes of part `number` of the upload, in chunks; raises InvalidPart at once (not when the
# chunks are read) when it is not there.
ReadPart = Callable[[int], Chunks]


def extend(writer: PartUpload, chunks: Chunks) -> None:
    """Start `writer` with `chunks` (a part stored before); it is aborted if that fails."""
    try:
        with contextlib.closing(chunks):
            for chunk in chunks:
                writer.write(chunk)
    except BaseException:
        writer.abort()
        raise


def assemble(
    begin_upload: Callable[..., Upload],
    record: StagedRecord,
    numbers: Sequence[int],
    read_part: ReadPart,
    *,
    content_type: str,
    name: str,
    metadata: Mapping[str, str] | None,
    precondition: Precondition | None,
    md5: bool,
) -> FileRecord:
    """Commit the parts `numbers` of `record` as its key's file; raise InvalidPart for a part
    that was never uploaded or is gone, and what the upload raises."""
    parts = {p.number: p for p in record.parts}
    missing = [n for n in numbers if n not in parts]
    if missing:
        raise InvalidPart(f"part {missing[0]} was not uploaded")
    size = sum(parts[n].size for n in numbers)
    upload = begin_upload(record.bucket, record.key, size=size, precondition=precondition, md5=md5)
    try:
        for number in numbers:
            with contextlib.closing(read_part(number)) as chunks:
                for chunk in chunks:
                    upload.write(chunk)
        done: FileRecord = upload.commit(
            content_type=content_type, name=name, metadata=metadata, precondition=precondition
        )
        return done
    finally:
        upload.abort()
