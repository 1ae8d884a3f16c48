"""A locustfile with no users, loaded beside loadtests/locustfile.py by benchmarks/mixed.py: it
splits the mix's "download" requests by the size of the file fetched (the key names it: small,
medium, large) and writes their times to MIXED_SIZES_OUT as JSON when locust quits. The users and
the requests stay exactly as the load test defines them."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from locust import events

KIND = re.compile(r"/(small|medium|large)-[0-9a-f]+\.bin$")
times: dict[str, list[float]] = {}
failures: dict[str, int] = {}


@events.request.add_listener
def split_downloads(
    request_type: str, name: str, response_time: float, exception: Exception | None, **kwargs: Any
) -> None:
    if name != "download" or not (found := KIND.search(kwargs.get("url") or "")):
        return
    kind = f"download {found.group(1)}"
    times.setdefault(kind, []).append(response_time)
    if exception is not None:
        failures[kind] = failures.get(kind, 0) + 1


@events.quitting.add_listener
def write_split(environment: Any, **_kwargs: Any) -> None:
    if out := os.environ.get("MIXED_SIZES_OUT"):
        Path(out).write_text(json.dumps({"times": times, "failures": failures}))
