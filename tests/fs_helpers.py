"""Disk conditions for the storage tests: a real full disk (a tiny tmpfs mounted on a temporary
directory) and a slow one (a disk call held in the spill's background thread).

The tmpfs needs root (or CAP_SYS_ADMIN); elsewhere the tests that need it are skipped with the reason.
Import as ``from fs_helpers import small_tmpfs`` (tests/ is on sys.path through its conftest).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10)


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "256k", *, read_only: bool = False) -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``where`` (created); unmount on exit. Skips the test if it can't."""
    where.mkdir(parents=True, exist_ok=True)
    opts = f"size={size},mode=0755" + (",ro" if read_only else "")
    if os.geteuid() != 0:
        pytest.skip("a full-disk test needs root to mount a small tmpfs")
    res = _run("mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where))
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield where
    finally:
        res = _run("umount", str(where))
        if res.returncode != 0:  # a descriptor still open somewhere: detach instead of failing later
            _run("umount", "-l", str(where))


def fill_disk(directory: Path, leave: int = 0) -> Path:
    """Write a filler file until the filesystem is full but ``leave`` bytes; returns it (delete it to free)."""
    filler = directory / "filler.bin"
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    with open(filler, "wb", buffering=0) as f:
        want = max(0, free - leave)
        chunk = b"\0" * 4096
        while want > 0:
            try:
                f.write(chunk[:min(4096, want)])
            except OSError:
                break
            want -= 4096
    return filler


def hold_off_main_thread(monkeypatch, name: str) -> dict:
    """``os.<name>`` called outside the main thread waits for ``state["release"]`` (bounded), or raises
    ``state["fail"]`` if set; the main thread's calls run at once. ``state["calls"]`` records the held
    calls' first arguments, ``state["entered"]`` is set by the first. Release it at the end of the test."""
    state = {"release": threading.Event(), "entered": threading.Event(), "fail": None, "calls": []}
    real = getattr(os, name)

    def held(*args):
        if threading.current_thread() is threading.main_thread():
            return real(*args)
        state["calls"].append(args[0])
        state["entered"].set()
        if state["fail"] is not None:
            raise state["fail"]
        assert state["release"].wait(10), f"the test never released os.{name}"
        return real(*args)

    monkeypatch.setattr(os, name, held)
    return state
