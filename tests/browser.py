"""Headless Chromium for the browser tests: found on PATH, or installed from Debian's packages.

python -m tests.browser     (installs it ahead of a run; CI runs as root on Debian 12)
"""

from __future__ import annotations

import os
import shutil
import subprocess

NAMES = ("chromium", "chromium-browser")
INSTALL_TIMEOUT = 600.0


class BrowserMissing(Exception):
    """No Chromium on PATH, and installing it failed; the message says why."""


def find() -> str | None:
    """The path of a Chromium on PATH, or None."""
    for name in NAMES:
        if path := shutil.which(name):
            return path
    return None


def chromium(timeout: float = INSTALL_TIMEOUT) -> str:
    """The path of Chromium, installed with apt-get when missing; raise BrowserMissing when it
    cannot be (not root, no apt-get, the install failed or took more than `timeout` seconds)."""
    if path := find():
        return path
    if shutil.which("apt-get") is None:
        raise BrowserMissing("no chromium on PATH, and no apt-get to install it with")
    if os.geteuid() != 0:
        raise BrowserMissing("no chromium on PATH; install it (apt-get install chromium) or run as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for command in (
            ["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
        ):
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
            if done.returncode != 0:
                tail = (done.stdout + done.stderr)[-2000:]
                raise BrowserMissing(f"{' '.join(command)} exited {done.returncode}:\n{tail}")
    except subprocess.TimeoutExpired as exc:
        raise BrowserMissing(f"{' '.join(exc.cmd)} took more than {timeout:.0f} s") from None
    if path := find():
        return path
    raise BrowserMissing("apt-get installed chromium, but it is not on PATH")


if __name__ == "__main__":
    print(chromium())
