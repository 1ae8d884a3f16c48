"""Property tests of the key rules and the store: any key is either refused with InvalidKey (a 400)
or stored and read back exactly, inside its bucket."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storage_server.blobfs import BlobStore
from storage_server.store import errors, keys

# Segments biased towards what breaks path handling: dots, slashes, backslashes, controls,
# spaces, look-alikes of "." and "/", and long runs.
TRICKY = st.sampled_from([".", "..", "/", "\\", "\x00", "\n", " ", "\u2215", "\uff0e", "%2e", "é", "a", "~"])
SEGMENT = st.lists(st.one_of(TRICKY, st.text(min_size=1, max_size=20)), min_size=0, max_size=12).map("".join)
KEYS = st.one_of(st.text(max_size=40), st.lists(SEGMENT, min_size=1, max_size=6).map("/".join))


@given(KEYS)
def test_a_key_is_refused_or_splits_into_plain_segments(key: str) -> None:
    try:
        parts = keys.validate_key(key)
    except errors.InvalidKey:
        return
    assert "/".join(parts) == key
    for part in parts:
        assert part not in ("", ".", "..")
        assert "/" not in part
        assert "\\" not in part
        assert "\x00" not in part
        assert 0 < len(part.encode()) <= keys.SEGMENT_MAX_BYTES
    assert len(key.encode()) <= keys.KEY_MAX_BYTES


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(KEYS, st.binary(max_size=64))
def test_any_key_round_trips_exactly_or_is_refused_and_never_leaves_its_bucket(key: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        store = BlobStore(root, fsync=False)
        store.prepare()
        store.create_bucket("box", public=False, description=None)
        store.create_bucket("box-sibling", public=False, description=None)
        try:
            upload = store.begin_upload("box", key)
        except (errors.InvalidKey, errors.Conflict):
            assert _only_buckets_exist(root)
            return
        upload.write(data)
        record = upload.commit(content_type="application/octet-stream", name="x")
        assert record.path == key
        reader = store.open_file("box", key)
        try:
            assert reader.read(1024) == data
        finally:
            reader.close()
        target = root / "box" / key
        assert target.read_bytes() == data
        assert os.path.realpath(target).startswith(str(root / "box") + os.sep)
        assert os.listdir(root / "box-sibling") == []
        store.delete_file("box", key)
        assert os.listdir(root / "box") == []


def _only_buckets_exist(root: Path) -> bool:
    return os.listdir(root / "box") == [] and os.listdir(root / "box-sibling") == []
