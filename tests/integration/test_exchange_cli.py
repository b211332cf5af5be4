"""`ssmd-fast exchange` refusing what it cannot serve: a busy port, a record file it cannot write, a replay
file with no events, each in one line and before the session is built (the default pregeneration takes
about 10 s on the dev VM); malformed lines of a replay file are reported, not dropped silently."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ssmd_fast.commands.keygen import write_key_pair
from ssmd_fast.kalshi.exchange_feed import ReplayFeed
from ssmd_fast.kalshi.generator import generate_session

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

QUICK = 6.0     # seconds: interpreter start and imports, well under the 2,000,000 events' pregeneration


@pytest.fixture(scope="module")
def public_key(tmp_path_factory) -> Path:
    return write_key_pair(tmp_path_factory.mktemp("keys"))[1]


def exchange(public_key: Path, *args: str, timeout: float = 30) -> tuple[int, str, float]:
    """Run the command to its end: ``(exit status, stderr, seconds)``."""
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "ssmd_fast", "exchange", "--public-key", str(public_key), *args],
                          capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stderr, time.monotonic() - t0


@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_busy_listen_port_is_refused_before_the_session_is_built(public_key, busy_port):
    rc, err, took = exchange(public_key, "--generate", "3000000", "--listen", f"127.0.0.1:{busy_port}")
    assert rc == 1 and err == f"ssmd-fast exchange: error: --listen 127.0.0.1:{busy_port}: address already in use\n"
    assert took < QUICK


def test_a_busy_control_port_is_refused_before_the_session_is_built(public_key, busy_port):
    rc, err, took = exchange(public_key, "--generate", "3000000", "--listen", "127.0.0.1:0",
                             "--control", f"127.0.0.1:{busy_port}")
    assert rc == 1 and err == f"ssmd-fast exchange: error: --control 127.0.0.1:{busy_port}: address already in use\n"
    assert took < QUICK


def test_a_record_file_that_cannot_be_written_is_refused_first(public_key, tmp_path):
    rc, err, took = exchange(public_key, "--generate", "3000000", "--listen", "127.0.0.1:0", "--record", str(tmp_path))
    assert rc == 1 and err == f"ssmd-fast exchange: error: --record {tmp_path}: cannot write: Is a directory\n"
    assert took < QUICK
    missing = tmp_path / "no" / "dir" / "x.jsonl"
    rc, err, took = exchange(public_key, "--generate", "3000000", "--listen", "127.0.0.1:0", "--record", str(missing))
    assert rc == 1 and err == (f"ssmd-fast exchange: error: --record {missing}: cannot write: no such directory "
                               f"{missing.parent}\n")
    assert took < QUICK and not (tmp_path / "no").exists()


def test_a_public_key_that_is_not_one_is_refused_first(public_key, tmp_path):
    bad = tmp_path / "k.pem"
    bad.write_text("not a key\n")
    rc, err, took = exchange(bad, "--generate", "3000000", "--listen", "127.0.0.1:0")
    assert rc == 1 and err.strip() == f"ssmd-fast exchange: error: --public-key {bad}: not a PEM public key " \
                                      "(ssmd-fast keygen writes one)"
    assert took < QUICK


@pytest.mark.parametrize("content,detail", [
    (b"", "the file is empty"),
    (b"\n\n", "the file is empty"),
    (b'{"type":"ticker"\nnot json\n', "2 lines skipped: first at line 1: not JSON (Expecting ',' delimiter at column 17)"),
    (b"[1, 2]\n", "1 line skipped: first at line 1: not a JSON object"),
    (b'\n{"id":1,"type":"subscribed","msg":{"channel":"ticker","sid":1}}\n',
     "1 line skipped: first at line 2: 'subscribed' is a control frame"),
    (b'{"type":"ticker","sid":1,"msg":{"price":5}}\n',
     "1 line skipped: first at line 1: ticker frame without a string \"market_ticker\""),
    (b"\xff\xfe garbage \x00\x01\n", "1 line skipped: first at line 1: not UTF-8 (byte 1)"),
])
def test_a_replay_file_without_events_is_an_error(public_key, tmp_path, content, detail):
    path = tmp_path / "session.jsonl"
    path.write_bytes(content)
    rc, err, _ = exchange(public_key, "--replay", str(path), "--listen", "127.0.0.1:0")
    assert rc == 1 and err == f"ssmd-fast exchange: error: {path}: no events to replay ({detail})\n"


def test_random_bytes_are_not_a_session(public_key, tmp_path):
    path = tmp_path / "random.jsonl"
    path.write_bytes(os.urandom(20_000))
    rc, err, _ = exchange(public_key, "--replay", str(path), "--listen", "127.0.0.1:0")
    assert rc == 1 and err.startswith(f"ssmd-fast exchange: error: {path}: no events to replay (")
    assert "skipped: first at line 1: not " in err and err.count("\n") == 1


def test_malformed_lines_of_a_replay_are_counted_and_the_first_named(tmp_path):
    frames = list(generate_session(50, seed=2, markets=2, era="current"))
    path = tmp_path / "session.jsonl"
    path.write_bytes(b"".join(f + b"\n" for f in frames[:10]) + b"{oops\n" + b"".join(f + b"\n" for f in frames[10:])
                     + b'{"type":"trade","msg":"x"}\n')
    feed = ReplayFeed(path)
    controls = sum(1 for f in frames if f.startswith(b'{"id"'))
    assert feed.total == len(frames) - controls and feed.malformed == 2
    assert feed.first_malformed == (11, "not JSON (Expecting property name enclosed in double quotes at column 2)")
    assert feed.skipped["unparseable"] == 1 and feed.skipped["trade"] == 1
    assert feed.first_skipped[1] == "'subscribed' is a control frame"       # skipped by design, not malformed


def test_malformed_lines_are_warned_about_and_the_rest_is_served(public_key, tmp_path):
    frames = list(generate_session(200, seed=2, markets=2, era="current"))
    path = tmp_path / "session.jsonl"
    path.write_bytes(b"".join(f + b"\n" for f in frames) + b"garbage\n" + b'{"type":"ticker","msg":{}}\n')
    served = len(ReplayFeed(path).chunks[0])
    proc = subprocess.Popen([sys.executable, "-m", "ssmd_fast", "exchange", "--public-key", str(public_key),
                             "--replay", str(path), "--listen", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().startswith("listening on ws://127.0.0.1:")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 0 and "frames sent: 0 (0 bytes) over 0 connections" in out
    assert err.splitlines()[:2] == [
        f"ssmd-fast exchange: warning: {path}: 2 lines skipped as malformed: first at line {len(frames) + 1}: "
        "not JSON (Expecting value at column 1)",
        f"replay session of {served} events ready in " + err.splitlines()[1].rsplit(" in ", 1)[1],
    ]
