"""The S3 backend: the store contract over one bucket of an S3-compatible engine (store.py),
its view of the engine (objects.py), uploads and readers (staging.py), local spool (spool.py),
sweep (sweep.py) and botocore client (client.py). Importing this package loads no botocore."""

# Threads per worker for the store's blocking calls, and HTTP connections to the engine: a call
# to an object store mostly waits on the network, so it gets many.
THREADS = 64
