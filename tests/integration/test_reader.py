"""The stream readers against a real nats-server: stream_read.read_stream and the ordered StreamReader."""

from __future__ import annotations

import asyncio
import logging
import time

import nats
import pytest

from ssmd_fast.natsserver import NatsServer
from ssmd_fast.sinks.reader import ReadError, StreamMessage, StreamReader
from ssmd_fast.sinks.stream_read import read_stream

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

STREAM = "DEV_KALSHI"


@pytest.fixture(scope="module")
def server():
    with NatsServer() as srv:
        yield srv


def run(coro):
    return asyncio.run(coro)


async def fill(url: str, stream: str, n: int, start: int = 0, *, create: bool = True) -> list[tuple]:
    """Publish n messages alternating raw/norm subjects with ids; returns (subject, id, payload)."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    if create:
        try:
            await js.delete_stream(stream)
        except nats.js.errors.NotFoundError:
            pass
        await js.add_stream(name=stream, subjects=["dev.kalshi.>"])
    sent = []
    for i in range(start, start + n):
        form = "json" if i % 2 == 0 else "norm"
        subject = f"dev.kalshi.{form}.trade.KX-{i % 5}"
        msg_id = f"kalshi:trade:t{i}:{'raw' if form == 'json' else 'norm'}"
        payload = b'{"i":%d}' % i
        ack = await js.publish(subject, payload, headers={"Nats-Msg-Id": msg_id})
        assert not ack.duplicate
        sent.append((subject, msg_id, payload))
    await nc.close()
    return sent


def test_read_stream_reads_everything_in_order_with_ids_and_seqs(server):
    sent = run(fill(server.url, STREAM, 3000))
    got = run(read_stream(server.url, STREAM, "dev.kalshi.>", timeout=30))
    assert [(m.subject, m.msg_id, m.data) for m in got] == sent
    assert [m.seq for m in got] == list(range(1, 3001))
    assert isinstance(got[0], StreamMessage)


def test_read_stream_with_a_subject_filter(server):
    sent = run(fill(server.url, STREAM, 400))
    got = run(read_stream(server.url, STREAM, "dev.kalshi.norm.>", timeout=30))
    assert [(m.subject, m.msg_id, m.data) for m in got] == [s for s in sent if ".norm." in s[0]]
    assert [m.seq for m in got] == list(range(2, 401, 2))
    got = run(read_stream(server.url, None, "dev.kalshi.json.trade.KX-3", timeout=30))  # stream looked up
    assert [m.data for m in got] == [p for s, _, p in sent if s == "dev.kalshi.json.trade.KX-3"]


def test_read_stream_of_an_empty_filter_returns_at_once(server):
    run(fill(server.url, STREAM, 10))
    t0 = time.monotonic()
    assert run(read_stream(server.url, STREAM, "dev.kalshi.nothing.>", timeout=30)) == []
    assert time.monotonic() - t0 < 5


def test_read_stream_errors_are_bounded_and_clear(server):
    run(fill(server.url, STREAM, 10))
    with pytest.raises(ReadError, match="NOPE.*not found"):
        run(read_stream(server.url, "NOPE", "dev.kalshi.>", timeout=10))
    t0 = time.monotonic()
    with NatsServer() as gone:
        url = gone.url
    with pytest.raises(ReadError, match="cannot connect"):
        run(read_stream(url, STREAM, "dev.kalshi.>", timeout=3))
    assert time.monotonic() - t0 < 10


def test_stream_reader_new_only_then_live(server):
    run(fill(server.url, STREAM, 50))

    async def main():
        nc = await nats.connect(server.url)
        async with StreamReader(nc, STREAM, "dev.kalshi.>", from_start=False) as reader:
            assert await reader.next(timeout=0.3) is None  # the 50 stored ones are not delivered
            sent = await fill(server.url, STREAM, 20, start=1000, create=False)
            got = [m async for m in reader.messages(count=20)]
        await nc.close()
        return sent, got

    sent, got = run(main())
    assert [(m.subject, m.msg_id, m.data) for m in got] == sent
    assert [m.seq for m in got] == list(range(51, 71))


@pytest.mark.slow
def test_stream_reader_survives_a_server_restart(tmp_path):
    with NatsServer(store_dir=tmp_path) as srv:
        run(fill(srv.url, STREAM, 100))

        async def main():
            nc = await nats.connect(srv.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)
            async with StreamReader(nc, STREAM, "dev.kalshi.>", from_start=True) as reader:
                first = [m async for m in reader.messages(count=100)]
                await asyncio.to_thread(srv.restart)
                sent = await fill(srv.url, STREAM, 30, start=500, create=False)
                later = []
                deadline = time.monotonic() + 30
                while len(later) < 30 and time.monotonic() < deadline:
                    m = await reader.next(timeout=1.0)
                    if m is not None:
                        later.append(m)
            await nc.close()
            return first, sent, later

        first, sent, later = run(main())
        assert [m.seq for m in first] == list(range(1, 101))
        assert [(m.subject, m.msg_id, m.data) for m in later] == sent
        assert [m.seq for m in later] == list(range(101, 131))


async def read(reader: StreamReader, n: int, within: float) -> list[StreamMessage]:
    """Up to n messages, waiting at most `within` seconds."""
    got: list[StreamMessage] = []
    deadline = time.monotonic() + within
    while len(got) < n and time.monotonic() < deadline:
        m = await reader.next(timeout=0.5)
        if m is not None:
            got.append(m)
    return got


# the re-created stream holds fewer messages than were read (its last sequence is behind the reader's)
# or more (past it: only its creation time tells it from the old one); nats-py's ordered consumer went
# on from sequence 11 in both: it skipped 1..10 of the new stream
@pytest.mark.parametrize("new", [5, 25])
def test_stream_reader_reads_a_stream_created_again_from_its_first_message(server, caplog, new):
    run(fill(server.url, STREAM, 10))

    async def main():
        nc = await nats.connect(server.url)
        async with StreamReader(nc, STREAM, "dev.kalshi.>", from_start=True) as reader:
            first = await read(reader, 10, within=10)
            sent = await fill(server.url, STREAM, new, start=100)       # deleted and created again
            later = await read(reader, new, within=20)
            more = await fill(server.url, STREAM, 3, start=200, create=False)
            after = await read(reader, 4, within=2)                     # the 3, and nothing twice
        await nc.close()
        return first, sent, later, more, after

    with caplog.at_level(logging.WARNING, logger="ssmd_fast.sinks.reader"):
        first, sent, later, more, after = run(main())
    assert [m.seq for m in first] == list(range(1, 11))
    assert [(m.subject, m.msg_id, m.data) for m in later] == sent
    assert [m.seq for m in later] == list(range(1, new + 1))
    assert [(m.subject, m.msg_id, m.data) for m in after] == more
    assert f"stream {STREAM} was created again: reading restarts at its first message" in caplog.text


def test_stream_reader_says_when_the_stream_is_gone_and_waits_for_it(server, caplog):
    run(fill(server.url, STREAM, 3))

    async def main():
        nc = await nats.connect(server.url)
        async with StreamReader(nc, STREAM, "dev.kalshi.>", from_start=False) as reader:
            await nc.jetstream().delete_stream(STREAM)
            t0 = time.monotonic()
            while "is gone" not in caplog.text and time.monotonic() - t0 < 15:
                assert await reader.next(timeout=0.5) is None
            said_after = time.monotonic() - t0
            for _ in range(4):                                          # still waiting, quietly
                assert await reader.next(timeout=0.5) is None
            sent = await fill(server.url, STREAM, 4, start=50)          # created again
            later = await read(reader, 4, within=20)
        await nc.close()
        return said_after, sent, later

    with caplog.at_level(logging.WARNING, logger="ssmd_fast.sinks.reader"):
        said_after, sent, later = run(main())
    assert said_after < 8, caplog.text
    gone = [r.getMessage() for r in caplog.records if "is gone" in r.getMessage()]
    assert gone == [f"stream {STREAM} is gone (deleted): waiting for it"]      # once, not once a look
    assert [(m.subject, m.msg_id, m.data) for m in later] == sent
    assert [m.seq for m in later] == [1, 2, 3, 4]
    assert f"stream {STREAM} was created again" in caplog.text
