"""The filesystem backend's parts (see blobfs.py)."""

# Threads per worker for the store's calls: a small upload's thread mostly waits (its fsync, then
# its group commit), and waiting threads must not leave reads queued behind them.
THREADS = 32
