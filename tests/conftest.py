"""Shared fixtures: key pairs, free ports, paths to the copied fixture corpus."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def key_pair() -> tuple[bytes, bytes]:
    """One RSA key pair for the whole run (generation costs ~50 ms)."""
    from ssmd_fast.kalshi.auth import generate_key_pair

    return generate_key_pair()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def port() -> int:
    return free_port()


def pytest_collection_modifyitems(config, items):
    """The twin pass (``SSMD_FAST_NO_EXTENSIONS=1``, see the Makefile) is there for the pure-Python
    implementations: a test's compiled instance (its ``impl`` parameter ``"cython"``) ran, side by side
    with the Python one, in the compiled pass. It is deselected here, not reported as one more skip."""
    if os.environ.get("SSMD_FAST_NO_EXTENSIONS", "").strip().lower() not in ("1", "true", "yes", "on"):
        return
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        (drop if callspec is not None and callspec.params.get("impl") == "cython" else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
