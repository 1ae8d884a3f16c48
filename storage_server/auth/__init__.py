"""Access control shared by every front door: the keys of STORAGE_KEYS_FILE (keyring.py) and the
signed URLs they issue (signing.py). Nothing here knows HTTP."""
