"""SelfDB's internal blob storage service: buckets of plain files, streamed in and out over HTTP."""

__version__ = "0.1.0"
