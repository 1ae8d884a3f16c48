"""The S3-protocol front door: the same buckets and files as the native API, for S3 clients
(docs/s3.md)."""
