"""Shared fixtures: key pairs, free ports, paths to the copied fixture corpus."""

from __future__ import annotations

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
