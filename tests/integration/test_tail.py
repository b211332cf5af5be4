"""`ssmd-fast tail` against a real nats-server and a stream filled with nats-py."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nats
import pytest

from ssmd_fast.natsserver import NatsServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parents[2]
STREAM = "DEV_KALSHI"
TOKEN = "tail-test-token-9f1c"


async def fill(url: str, n: int, start: int = 0, *, create: bool = True, **kw) -> list[bytes]:
    """n messages alternating raw/norm subjects; returns the lines tail prints for them."""
    nc = await nats.connect(url, **kw)
    js = nc.jetstream()
    if create:
        try:
            await js.delete_stream(STREAM)
        except nats.js.errors.NotFoundError:
            pass
        await js.add_stream(name=STREAM, subjects=["dev.kalshi.>"])
    lines = []
    for i in range(start, start + n):
        form = "json" if i % 2 == 0 else "norm"
        subject, msg_id = f"dev.kalshi.{form}.trade.KX-{i % 3}", f"kalshi:trade:t{i}:{form}"
        payload = b'{"type":"trade","i":%d}' % i
        await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
        lines.append(f"{subject} {msg_id} ".encode() + payload)
    await nc.close()
    return lines


async def consumers(url: str, **kw) -> int:
    nc = await nats.connect(url, **kw)
    info = await nc.jetstream().stream_info(STREAM)
    await nc.close()
    return info.state.consumer_count


def tail(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ssmd_fast", "tail", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, **(env or {})})


def wait_for_consumer(url: str, proc: subprocess.Popen, **kw) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        if asyncio.run(consumers(url, **kw)) >= 1:
            return
        time.sleep(0.05)
    raise AssertionError("tail did not create its consumer within 20 s")


@pytest.fixture(scope="module")
def server():
    with NatsServer() as srv:
        yield srv


def test_tail_from_start_prints_subject_id_payload(server):
    lines = asyncio.run(fill(server.url, 40))
    p = tail("dev.kalshi.>", "--nats", server.url, "--from-start", "--count", "25")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err.decode()
    assert out.splitlines() == lines[:25]
    assert b"25 messages" in err


def test_tail_raw_with_a_subject_filter(server):
    lines = asyncio.run(fill(server.url, 30))
    p = tail("dev.kalshi.norm.>", "--nats", server.url, "--from-start", "--count", "15", "--raw")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err.decode()
    assert out.splitlines() == [x.split(b" ", 2)[2] for x in lines if b".norm." in x.split(b" ")[0]]


def test_tail_follows_new_messages_only(server):
    old = asyncio.run(fill(server.url, 10))
    p = tail("dev.kalshi.>", "--nats", server.url, "--count", "5")
    try:
        wait_for_consumer(server.url, p)
        new = asyncio.run(fill(server.url, 5, start=100, create=False))
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 0, err.decode()
    assert out.splitlines() == new and not set(old) & set(out.splitlines())


def test_ctrl_c_stops_tail_cleanly(server):
    asyncio.run(fill(server.url, 3))
    p = tail("dev.kalshi.>", "--nats", server.url, "--from-start")
    try:
        wait_for_consumer(server.url, p)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=15)
        assert time.monotonic() - t0 < 5
    finally:
        p.kill()
    assert p.returncode == 0, err.decode()
    assert len(out.splitlines()) <= 3 and b"messages" in err and b"Traceback" not in err


def test_tail_with_an_environment_file_and_token_auth(tmp_path):
    with NatsServer(extra_config=f'authorization {{ token: "{TOKEN}" }}') as srv:
        lines = asyncio.run(fill(srv.url, 12, token=TOKEN))
        env_file = tmp_path / "dev.yaml"
        env_file.write_text(textwrap.dedent(f"""\
            name: dev
            feed: kalshi
            transport:
              type: nats
              url: {srv.url}
              stream: {STREAM}
              auth:
                token_env: TAIL_TEST_TOKEN
            """))
        p = tail("--env", str(env_file), "--from-start", "--count", "12", env={"TAIL_TEST_TOKEN": TOKEN})
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err.decode()
        assert out.splitlines() == lines  # the default filter is {subject_prefix}.> = dev.kalshi.>
        assert TOKEN.encode() not in err

        p = tail("--env", str(env_file), "--from-start", "--count", "1", env={"TAIL_TEST_TOKEN": ""})
        out, err = p.communicate(timeout=30)
        assert p.returncode == 1 and b"TAIL_TEST_TOKEN" in err and out == b""


def test_tail_usage_errors():
    p = tail("--nats", "nats://127.0.0.1:1")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 2 and b"SUBJECT" in err          # as argparse's own errors


def test_tail_one_message_is_singular(server):
    asyncio.run(fill(server.url, 3))
    p = tail("dev.kalshi.>", "--nats", server.url, "--from-start", "--count", "1")
    out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err.decode()
    assert len(out.splitlines()) == 1 and err.decode().splitlines()[-1] == "ssmd-fast tail: 1 message"


def test_tail_names_the_server_that_refuses():
    with NatsServer() as srv:
        url = srv.url
    t0 = time.monotonic()
    p = tail("dev.kalshi.>", "--nats", url)                 # the server is gone: its port refuses
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1 and out == b""
    assert err.decode().strip() == f"ssmd-fast tail: error: cannot connect to {url}: connection refused"
    assert time.monotonic() - t0 < 5                        # it used to wait 10 s and say TimeoutError()


def read_from(pipe, until, within: float = 20.0) -> bytes:
    """What tail wrote to a pipe of its until ``until(text)`` holds, waiting at most ``within`` seconds
    (os.read on the descriptor: communicate() later gets the rest)."""
    fd, text = pipe.fileno(), b""
    deadline = time.monotonic() + within
    while not until(text) and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(fd, 65536) if ready else b""
        if ready and not chunk:
            break                                           # tail exited
        text += chunk
    return text


async def delete_stream(url: str) -> None:
    nc = await nats.connect(url)
    await nc.jetstream().delete_stream(STREAM)
    await nc.close()


def test_tail_reads_a_stream_created_again_from_its_first_message(server):
    # nats-py's ordered consumer went on from sequence 8 of the new stream: it printed nothing more
    asyncio.run(fill(server.url, 3))
    p = tail("dev.kalshi.>", "--nats", server.url, "--count", "10")
    try:
        wait_for_consumer(server.url, p)
        new = asyncio.run(fill(server.url, 4, start=10, create=False))
        assert read_from(p.stdout, lambda t: t.count(b"\n") >= 4).splitlines() == new
        again = asyncio.run(fill(server.url, 6, start=20))         # deleted and created again
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 0, err.decode()
    assert out.splitlines() == again
    said = f"ssmd-fast tail: stream {STREAM} was created again: reading restarts at its first message"
    assert said.encode() in err
    assert err.decode().splitlines()[-1] == "ssmd-fast tail: 10 messages"


def test_tail_says_the_stream_is_gone_and_waits_for_it(server):
    first = asyncio.run(fill(server.url, 2))
    p = tail("dev.kalshi.>", "--nats", server.url, "--from-start", "--count", "5")
    try:
        assert read_from(p.stdout, lambda t: t.count(b"\n") >= 2).splitlines() == first
        asyncio.run(delete_stream(server.url))
        t0 = time.monotonic()
        said = read_from(p.stderr, lambda t: b"\n" in t, within=15)
        assert said == f"ssmd-fast tail: stream {STREAM} is gone (deleted): waiting for it\n".encode()
        assert time.monotonic() - t0 < 8
        time.sleep(1.5)
        assert p.poll() is None                                     # still waiting for it
        again = asyncio.run(fill(server.url, 3, start=30))          # created again
        out, err = p.communicate(timeout=30)
    finally:
        p.kill()
    assert p.returncode == 0, err.decode()
    assert out.splitlines() == again
    assert err.decode().splitlines() == [
        f"ssmd-fast tail: stream {STREAM} was created again: reading restarts at its first message",
        "ssmd-fast tail: 5 messages"]


def test_tail_a_filter_the_stream_never_stores_is_an_error(server):
    asyncio.run(fill(server.url, 3))
    t0 = time.monotonic()
    p = tail("other.>", "--nats", server.url, "--stream", STREAM, "--count", "1")
    try:
        out, err = p.communicate(timeout=30)                # it waited for ever, saying nothing
    finally:
        p.kill()
    assert p.returncode == 1 and out == b""
    assert err.decode().strip() == \
        f"ssmd-fast tail: error: stream {STREAM} stores dev.kalshi.>: no message can match other.>"
    assert time.monotonic() - t0 < 10
